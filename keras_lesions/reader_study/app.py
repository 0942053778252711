"""The reader study's local web application (Flask).

Pages: the first page (a reader gives their name; the readers so far and
their progress), the study page (one ROI at a time, answered with one key
per answer), the end page. The study page talks to two JSON endpoints: the
reader's state and one answer. Every answer is saved by ``Study.answer`` in
a transaction of its own before the page moves on, so closing the browser
loses nothing and the reader resumes at the same image and question.

Images are served by item id from the study database only: nothing from a
request reaches the file system. Their addresses carry the study's token,
so a browser's cache never shows one study's image in another. Reader
names are checked by the study and escaped by Jinja's autoescaping. The
answer endpoint reads JSON only, which a page of another site cannot send
to it without the browser asking first (a CORS preflight this application
never grants), and requests must name a trusted host, which stops a site
that re-points its own name at 127.0.0.1 (DNS rebinding). (Checked here,
not with Flask's TRUSTED_HOSTS, which werkzeug 3.1 cannot match for IPv6
addresses such as ::1.)
"""
from __future__ import annotations

import logging
import socket
import sqlite3
from urllib.parse import urlsplit

from keras_lesions.reader_study.study import AnswerRefused, Study, StudyError

# One key per answer (shown on the page): the classes by number, as in the
# study database's class order, then R / S for real / synthetic.
ORIGIN_KEYS = {"r": "real", "s": "synthetic"}  # the values are study.ORIGINS
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]
ANY_ADDRESS = ("0.0.0.0", "::", "")


def class_keys(class_names) -> dict[str, str]:
    """{key: class}: "1", "2", ... in the study's class order (at most
    ``study.MAX_CLASSES``, which ``study_items`` enforces: one digit each)."""
    return {str(i + 1): name for i, name in enumerate(class_names)}


def trusted_hosts(host: str) -> list[str] | None:
    """The host names a request may give when serving on ``host``: the
    loopback names and ``host`` itself; None (any) when listening on every
    address, whose names this machine cannot know."""
    if host in ANY_ADDRESS:
        return None
    return list(dict.fromkeys([*LOOPBACK_NAMES, host.strip("[]").lower()]))


def host_name(header: str) -> str | None:
    """The host name of a Host header, without port or IPv6 brackets."""
    try:
        return urlsplit(f"//{header}").hostname
    except ValueError:
        return None


def create_app(study: Study, hosts: list[str] | None = LOOPBACK_NAMES):
    """The Flask application serving ``study``, answering requests for
    ``hosts`` only (None: any host)."""
    from flask import Flask, abort, jsonify, redirect, render_template, request, url_for

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024  # an answer is a few dozen bytes
    token = study.meta["token"]

    @app.before_request
    def trusted_host():
        if hosts is not None and host_name(request.headers.get("Host", "")) not in hosts:
            abort(400, "this study answers requests for this machine's own addresses only")

    keys = {"class": class_keys(study.class_names), "origin": ORIGIN_KEYS}

    def first_page(error: str | None = None, status: int = 200, name: str = ""):
        return render_template("start.html", progress=study.progress(), error=error,
                               name=name, total=study.n_items), status

    @app.get("/")
    def index():
        return first_page()

    @app.post("/start")
    def start():
        given = request.form.get("name", "")
        try:
            name, new = study.start_reader(given)
        except AnswerRefused as exc:
            return first_page(exc.problem, exc.status, name=given)
        return redirect(url_for("read", name=name, start="new" if new else "resumed"),
                        code=303)

    @app.get("/read/<name>")
    def read(name):
        try:
            state = study.state(name)
        except AnswerRefused as exc:
            return first_page(exc.problem, exc.status)
        if state["finished"]:
            return render_template("end.html", state=state, progress=study.progress())
        return render_template("study.html", state=state, keys=keys, token=token,
                               start=request.args.get("start"))

    @app.get("/image/<study_token>/<int:item>")
    def image(study_token, item):
        png = study.image_png(item) if study_token == token else None
        if png is None:
            abort(404)
        response = app.response_class(png, mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=86400"
        return response

    @app.get("/api/state/<name>")
    def state(name):
        try:
            return jsonify(study.state(name))
        except AnswerRefused as exc:
            return jsonify(error=exc.problem), exc.status

    @app.post("/api/answer")
    def answer():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="an answer is a JSON object {reader, position, question, "
                                 "value}"), 400
        try:
            missing = [k for k in ("reader", "position", "question", "value") if k not in body]
            if missing:
                raise AnswerRefused(f"the answer lacks {', '.join(missing)}")
            return jsonify(study.answer(body["reader"], body["position"], body["question"],
                                        body["value"]))
        except AnswerRefused as exc:
            return jsonify(error=exc.problem), exc.status

    @app.errorhandler(sqlite3.Error)
    def database_error(exc):
        # a database locked beyond the wait, a full disk: nothing was saved
        message = (f"the study database could not be written ({exc}); nothing was saved: "
                   "press the key again, or tell whoever runs the study")
        if request.path.startswith("/api/"):
            return jsonify(error=message), 503
        return first_page(message, 503)

    return app


def listen(host: str = "127.0.0.1", port: int = 8765) -> socket.socket:
    """A socket listening on (host, port), bound before anything else is
    done (werkzeug would print its own advice and exit on a taken port).

    Raises:
        StudyError: the port is taken, or the address is not this machine's.
    """
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
    except OSError as exc:
        listening.close()
        raise StudyError(f"cannot listen on {host} port {port}: {exc.strerror or exc} (another "
                         "--port, or --port 0 for any free one)") from None
    return listening


def serve(study: Study, listening: socket.socket, host: str = "127.0.0.1", log=print) -> None:
    """Serve the study on ``listening`` (from :func:`listen` with ``host``)
    until Ctrl+C (werkzeug's threaded server: a handful of readers on one
    machine or a ward's network, not the internet)."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    port = listening.getsockname()[1]
    server = make_server(host, port, create_app(study, trusted_hosts(host)), threaded=True,
                         fd=listening.fileno())
    listening.close()  # the server holds its own copy of the socket
    shown = f"[{host}]" if ":" in host else host
    try:
        log(f"reader study of {study.n_items} images ({study.path}) at "
            f"http://{shown}:{port}/ ; Ctrl+C stops it (every answer is already saved)")
        server.serve_forever()  # werkzeug's returns on Ctrl+C
    except KeyboardInterrupt:
        pass  # Ctrl+C before the server loop started
    finally:
        server.server_close()
    log("stopped; every answer given is in the study database")
