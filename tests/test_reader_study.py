"""The reader study (Frid-Adar §4.4, Table 4): the study database, the web
application (Flask's test client, then a real headless Chromium driven by
Selenium) and Table 4 for scripted readers."""
from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from keras_lesions.data.dataset import Lesion, LesionDataset, write_dataset
from keras_lesions.reader_study.app import create_app, trusted_hosts
from keras_lesions.reader_study.study import (AnswerRefused, Study, StudyError,
                                              check_reader_name, create_study, open_or_create,
                                              study_items)
from keras_lesions.reader_study.table4 import table4, table4_lines, write_table4

from conftest import make_toy_dataset


def synthetic_dataset(per_class=(3, 3, 3), size=64, class_names=("cyst", "metastasis",
                                                                  "hemangioma"), seed=1):
    """A dataset shaped like `kl synthesize`'s: normalised [0, 1] ROIs at the
    input size, marked synthetic."""
    rng = np.random.default_rng(seed)
    lesions = []
    for label, count in enumerate(per_class):
        for i in range(count):
            roi = rng.uniform(0, 1, (size, size)).astype(np.float32)
            lesions.append(Lesion(
                lesion_id=f"synth-{class_names[label]}-{i + 1:06d}", patient_id="synthetic:g",
                label=label, roi=roi, context=roi, roi_box=(0, 0, size, size),
                lesion_box=(8, 8, size - 8, size - 8), mask=None, source="gan",
                has_context=False, attributes={"synthetic": True}))
    return LesionDataset(class_names=list(class_names), lesions=lesions,
                         intensity_unit="normalized", window_level=math.nan,
                         window_width=math.nan, input_size=size, created_by="tests",
                         extra={"synthetic": True})


@pytest.fixture
def datasets(tmp_path):
    real = write_dataset(make_toy_dataset(), tmp_path / "real.h5")  # 18 lesions, 3 classes
    synthetic = write_dataset(synthetic_dataset(), tmp_path / "synth.h5")
    return real, synthetic


@pytest.fixture
def study(tmp_path, datasets):
    real, synthetic = datasets
    return create_study(tmp_path / "study.sqlite", real, synthetic, n_real=6, n_synthetic=4,
                        seed=3)


def _items(study):
    """The study's rows in id order (straight from the file, as an auditor would)."""
    import sqlite3

    with sqlite3.connect(study.path) as conn:
        return [{"id": r[0], "lesion_id": r[1]}
                for r in conn.execute("SELECT id, lesion_id FROM items ORDER BY id")]


def answer_all(study, name, decide):
    """A scripted reader: ``decide(truth) -> (class, origin)`` for every image."""
    truths = study.truths()
    study.start_reader(name)
    state = study.state(name)
    while not state["finished"]:
        said = dict(zip(("class", "origin"), decide(truths[state["item"]])))
        state = study.answer(name, state["position"], state["question"],
                             said[state["question"]])
    return state


def other_class(name, class_names):
    return class_names[(class_names.index(name) + 1) % len(class_names)]


# --------------------------------------------------------------------------- the study


def test_the_study_holds_the_asked_lesions_shown_alike(study, datasets, tmp_path):
    from PIL import Image

    truths = study.truths()
    assert sorted(truths) == list(range(1, 11))  # ids 1..10, a permutation
    assert sum(t["is_real"] for t in truths.values()) == 6
    # The same seed draws the same lesions, but the ids do not follow from it
    # (a reader with the code could otherwise tell which ids are real).
    again = create_study(tmp_path / "again.sqlite", *datasets, n_real=6, n_synthetic=4, seed=3)
    same = sorted(r["lesion_id"] for r in _items(study))
    assert same == sorted(r["lesion_id"] for r in _items(again))
    assert [r["lesion_id"] for r in _items(study)] != [r["lesion_id"] for r in _items(again)]
    synthetic = [t["truth_class"] for t in truths.values() if not t["is_real"]]
    # 4 synthetic lesions spread evenly over 3 classes: 2, 1, 1
    assert sorted(synthetic.count(c) for c in study.class_names) == [1, 1, 2]
    assert study.meta["n_real"] == 6 and study.meta["n_synthetic"] == 4
    # uncompressed: a file's size says nothing about its texture
    assert len({len(study.image_png(item)) for item in truths}) == 1
    for item in truths:
        picture = Image.open(io.BytesIO(study.image_png(item)))
        # real and synthetic alike: greyscale at the input size, no text chunks
        assert picture.size == (64, 64) and picture.mode == "L"
        assert not picture.info.get("text") and not any(
            k in picture.info for k in ("Description", "Comment", "Source"))
    assert study.image_png(11) is None


def test_a_bad_study_is_refused_and_nothing_is_written(tmp_path, datasets):
    real, synthetic = datasets
    db = tmp_path / "new.sqlite"
    with pytest.raises(StudyError, match="has 18 lesions; the study asks for 19"):
        create_study(db, real, synthetic, n_real=19)
    with pytest.raises(StudyError, match="has 3 cyst lesions; an even spread of 12"):
        create_study(db, real, synthetic, n_synthetic=12)
    with pytest.raises(StudyError, match="both the real and the synthetic"):
        create_study(db, real, real)
    with pytest.raises(StudyError, match="synthetic dataset; --real takes the real"):
        create_study(db, synthetic, real)
    small = write_dataset(synthetic_dataset(size=32), tmp_path / "small.h5")
    with pytest.raises(StudyError, match="32x32 images and the real lesions are shown at 64x64"):
        create_study(db, real, small)
    odd = write_dataset(synthetic_dataset(class_names=("cyst", "abscess", "hemangioma")),
                        tmp_path / "odd.h5")
    with pytest.raises(StudyError, match="class 'abscess', which the real dataset"):
        create_study(db, real, odd)
    with pytest.raises(StudyError, match="at least one lesion"):
        create_study(db, real, synthetic, n_real=0, n_synthetic=0)
    many = make_toy_dataset()
    many.class_names = [f"class{i}" for i in range(10)]
    with pytest.raises(StudyError, match="has 10 classes; the study page answers the class "
                                         "with one digit key, so at most 9"):
        study_items(many, synthetic_dataset(), 1, 0, 0)
    assert not db.exists() and not list(tmp_path.glob("*.tmp*"))
    create_study(db, real, synthetic, n_real=2, n_synthetic=3)
    with pytest.raises(StudyError, match="exists already"):
        create_study(db, real, synthetic)


def test_resuming_checks_the_arguments_against_the_study(study, datasets, tmp_path):
    real, synthetic = datasets
    same, created = open_or_create(study.path, real, synthetic, n_real=6, n_synthetic=4, seed=3)
    assert not created and same.n_items == 10
    assert open_or_create(study.path)[0].n_items == 10  # --db alone resumes
    with pytest.raises(StudyError, match="made with n-real 6, not 5"):
        open_or_create(study.path, n_real=5)
    other = write_dataset(synthetic_dataset(seed=2), tmp_path / "other.h5")
    with pytest.raises(StudyError, match="was made from --synthetic"):
        open_or_create(study.path, synthetic_path=other)
    with pytest.raises(StudyError, match="needs --real and --synthetic"):
        open_or_create(tmp_path / "missing.sqlite", real)


def test_a_damaged_database_is_one_clear_error(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StudyError, match="junk.sqlite: is not a reader-study database"):
        Study(junk)
    import sqlite3
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    with pytest.raises(StudyError, match="is not a reader-study database"):
        Study(other)
    with pytest.raises(StudyError, match="no such study database"):
        Study(tmp_path / "absent.sqlite")
    earlier = tmp_path / "earlier.sqlite"
    with sqlite3.connect(earlier) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        conn.executemany("INSERT INTO meta VALUES (?, ?)",
                         [("format", '"keras-lesions reader study"'), ("version", "1")])
    with pytest.raises(StudyError, match="is a version 1 study; this keras-lesions reads "
                                         "version 2"):
        Study(earlier)
    assert not (tmp_path / "absent.sqlite").exists()


def test_each_reader_has_a_fixed_order_of_their_own(study):
    assert study.start_reader("Reader A") == ("Reader A", True)
    study.start_reader("Reader B")
    a, b = study.order("Reader A"), study.order("Reader B")
    assert sorted(a) == sorted(b) == list(range(1, 11)) and a != b  # 1 in 10! to fail
    # a returning reader keeps theirs, whatever the case and spacing of the name
    assert study.start_reader("  reader   a ") == ("Reader A", False)
    assert Study(study.path).order("READER A") == a
    assert study.state("reader a")["item"] == a[0] and study.state("Reader B")["item"] == b[0]
    assert study.readers() == ["Reader A", "Reader B"]


def test_answers_are_saved_in_order_once_each(study):
    name, _ = study.start_reader("  Dr Mu\u0308ller ")  # a decomposed ü is composed
    assert name == "Dr Müller"
    state = study.state(name)
    assert (state["position"], state["question"], state["done"]) == (0, "class", 0)
    with pytest.raises(AnswerRefused, match="'tumour' is not an answer to the class question"):
        study.answer(name, 0, "class", "tumour")
    with pytest.raises(AnswerRefused, match="not the question you are on") as refused:
        study.answer(name, 0, "origin", "real")  # the class comes first
    assert refused.value.status == 409
    state = study.answer(name, 0, "class", "cyst")
    assert state["question"] == "origin" and state["given"] == {"class": "cyst"}
    with pytest.raises(AnswerRefused, match="already has your class answer") as refused:
        study.answer(name, 0, "class", "metastasis")
    assert refused.value.status == 409
    state = study.answer(name, 0, "origin", "synthetic")
    assert (state["position"], state["question"], state["done"]) == (1, "class", 1)
    with pytest.raises(AnswerRefused, match="not the question you are on"):
        study.answer(name, 5, "class", "cyst")
    with pytest.raises(AnswerRefused, match="no image 11"):
        study.answer(name, 10, "class", "cyst")
    with pytest.raises(AnswerRefused, match="no reader 'nobody'") as refused:
        study.answer("nobody", 0, "class", "cyst")
    assert refused.value.status == 404
    # a reopened study (a restarted server) has every answer given
    again = Study(study.path)
    assert again.state(name)["done"] == 1
    assert [(r["said_class"], r["said_real"]) for r in again.responses()] == [("cyst", False)]


def test_concurrent_answers_to_one_question_save_one(study):
    """Two tabs, a double press: of 8 requests at once for the same question,
    one is saved and the others are refused."""
    study.start_reader("Quick")
    outcomes = []

    def press(value):
        try:
            study.answer("Quick", 0, "class", value)
            outcomes.append("saved")
        except AnswerRefused as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=press, args=(study.class_names[i % 3],))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == [409] * 7 + ["saved"]
    assert len([r for r in Study(study.path).state("Quick")["given"]]) == 1


@pytest.mark.parametrize("bad", ["", "   ", "<script>", "a" * 41, "-dash", "nul\x00name",
                                 "semi;colon"])
def test_reader_names_are_checked(bad):
    with pytest.raises(AnswerRefused):
        check_reader_name(bad)


# --------------------------------------------------------------------------- Table 4


def test_table4_for_scripted_readers(study):
    names = study.class_names

    def expert(truth):  # right on every real class, wrong on every synthetic one; all "real"
        said = truth["truth_class"] if truth["is_real"] else other_class(truth["truth_class"],
                                                                          names)
        return said, "real"

    def perfect(truth):
        return truth["truth_class"], "real" if truth["is_real"] else "synthetic"

    answer_all(study, "Expert 1", expert)
    answer_all(study, "Expert 2", perfect)
    answer_all(study, "Contrary", lambda t: (t["truth_class"],
                                             "synthetic" if t["is_real"] else "real"))
    result = table4(study)
    # reliably wrong is not telling them apart: the test is one-sided
    contrary = result["readers"].pop("Contrary")
    assert contrary["origin"]["correct"] == 0 and contrary["origin_p"] == pytest.approx(1)
    result["agreement"] = [p for p in result["agreement"] if "Contrary" not in p["readers"]]
    one, two = result["readers"]["Expert 1"], result["readers"]["Expert 2"]
    # "real" to all scores 60% here: Expert 1's 6 of 10 is no better, and says nothing
    assert one["chance"]["commoner_kind"] == "real"
    assert one["chance"]["commoner_kind_share"] == pytest.approx(0.6)
    assert one["origin_balanced"] == pytest.approx(0.5) and one["origin_p"] == pytest.approx(1)
    assert two["origin_balanced"] == 1 and two["origin_p"] == pytest.approx(1 / 210)
    assert (one["real"]["correct"], one["real"]["n"]) == (6, 6)
    assert (one["synthetic"]["correct"], one["synthetic"]["n"]) == (0, 4)
    assert (one["total"]["correct"], one["total"]["n"]) == (6, 10)
    assert (one["origin"]["correct"], one["synthetic_called_real"]["correct"]) == (6, 4)
    assert (two["total"]["correct"], two["origin"]["correct"]) == (10, 10)
    low, high = one["total"]["ci95"]
    assert low < 0.6 < high and 0 < low and high < 1
    (pair,) = result["agreement"]
    assert pair["n"] == 10 and pair["class_agreement"]["correct"] == 6
    assert pair["class_agreement_correct"] == 6
    # Cohen's kappa by hand: p_o against the agreement the two readers'
    # marginal frequencies give by chance
    responses = study.responses()
    a = [r["said_class"] for r in responses if r["reader"] == "Expert 1"]
    b = [r["said_class"] for r in responses if r["reader"] == "Expert 2"]
    items_a = [r["item"] for r in responses if r["reader"] == "Expert 1"]
    items_b = [r["item"] for r in responses if r["reader"] == "Expert 2"]
    b = [b[items_b.index(i)] for i in items_a]  # the same image in both lists
    p_o = np.mean([x == y for x, y in zip(a, b)])
    p_e = sum(a.count(c) * b.count(c) for c in names) / len(a) ** 2
    assert pair["class_kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))
    # origin: Expert 1 always said "real", so there is no agreement beyond chance
    assert pair["origin_agreement"]["correct"] == 6 and pair["origin_kappa"] == pytest.approx(0)
    lines = "\n".join(table4_lines(result))
    assert "| Expert 1 | 100.0 (" in lines and "6\\10 = 60.0" in lines
    assert "| Expert 2 | " in lines and "| 60.0 (real) | 100.0 | 0.0 (0.0–49.0) | 0.005 |" in lines
    assert "| Expert 1 and Expert 2 | 10 | 6\\10 = 60.0" in lines


def test_table4_says_who_has_not_finished(study, tmp_path):
    study.start_reader("Late")
    state = study.state("Late")
    study.answer("Late", 0, "class", "cyst")  # half an image: not counted
    result = write_table4(study.path, tmp_path / "out")
    assert result["readers"] == {}
    text = (tmp_path / "out" / "table4.md").read_text()
    assert "Not finished, counted over the images answered so far: Late (0 of 10)" in text
    study.answer("Late", 0, "origin", "real")
    assert table4(study)["readers"]["Late"]["total"]["n"] == 1 and state["position"] == 0
    # one kind answered: rates and tests that are undefined are null, never NaN
    result = write_table4(study.path, tmp_path / "out")
    row = json.loads(Path(result["json"]).read_text(), parse_constant=_no_nan)["readers"]["Late"]
    assert row["origin_p"] is None and None in (row["real"]["rate"], row["synthetic"]["rate"])


def _no_nan(name):
    raise AssertionError(f"{name} in JSON")


# --------------------------------------------------------------------------- the web app


def test_the_web_application_over_http(study):
    client = create_app(study).test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"Your name" in page.data
    refused = client.post("/start", data={"name": "<b>bold</b>"})
    assert refused.status_code == 400 and b"&lt;b&gt;bold&lt;/b&gt;" in refused.data
    assert b"<b>bold</b>" not in refused.data
    started = client.post("/start", data={"name": "O'Brien"})
    assert started.status_code == 303 and started.headers["Location"].endswith("/read/O'Brien?start=new")
    page = client.get("/read/O%27Brien?start=new")
    assert b"Welcome: you start at image 1." in page.data
    again = client.post("/start", data={"name": "o'brien"})
    assert again.headers["Location"].endswith("/read/O'Brien?start=resumed")
    page = client.get("/read/O%27Brien")
    assert page.status_code == 200 and b"O&#39;Brien" in page.data and b"O'Brien</" not in page.data
    item = study.state("O'Brien")["item"]
    token = study.meta["token"]
    assert f'"/image/{token}/0"'.encode() in page.data  # the address the script extends
    for key, name in (("1", "cyst"), ("2", "metastasis"), ("3", "hemangioma"), ("R", "real"),
                      ("S", "synthetic")):
        assert f"<kbd>{key}</kbd> {name}".encode() in page.data
    image = client.get(f"/image/{token}/{item}")
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data == study.image_png(item)
    for path in (f"/image/{token}/99", f"/image/{'0' * 16}/{item}", f"/image/{item}",
                 "/image/../../etc/passwd", "/image/%2e%2e%2fstudy.sqlite",
                 "/static/../study.sqlite"):
        assert client.get(path).status_code == 404
    ok = client.post("/api/answer", json={"reader": "O'Brien", "position": 0,
                                          "question": "class", "value": "cyst"})
    assert ok.status_code == 200 and ok.json["question"] == "origin"
    again = client.post("/api/answer", json={"reader": "O'Brien", "position": 0,
                                             "question": "class", "value": "cyst"})
    assert again.status_code == 409 and "answers are final" in again.json["error"]
    bad = client.post("/api/answer", json={"reader": "O'Brien", "position": 0,
                                           "question": "origin", "value": "fake"})
    assert bad.status_code == 400 and "'fake' is not an answer" in bad.json["error"]
    lacking = client.post("/api/answer", json={"reader": "O'Brien", "position": 0})
    assert lacking.status_code == 400 and "lacks question, value" in lacking.json["error"]
    # a form post (what another site's page could send unasked) is not an answer
    form = client.post("/api/answer", data={"reader": "O'Brien", "position": "0",
                                            "question": "origin", "value": "real"})
    assert form.status_code == 400
    assert client.get("/api/state/nobody").status_code == 404
    assert client.get("/read/nobody").status_code == 404
    assert client.get("/api/state/O'Brien").json["done"] == 0
    # a page of another site that re-points its name at 127.0.0.1 gets nothing
    assert client.get("/api/state/O'Brien", headers={"Host": "evil.example"}).status_code == 400
    ipv6 = create_app(study, trusted_hosts("::1")).test_client()
    assert ipv6.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    assert ipv6.get("/", headers={"Host": "evil.example:8765"}).status_code == 400
    assert trusted_hosts("0.0.0.0") is None  # every address: its names cannot be known
    assert create_app(study, None).test_client().get(
        "/", headers={"Host": "ward-pc.example"}).status_code == 200
    assert b'href="/read/' not in client.get("/").data  # no one continues as a colleague
    answer_all(study, "O'Brien", lambda t: (t["truth_class"], "real"))
    end = client.get("/read/O%27Brien")
    assert b"You have answered all 10 images (10 of 10)" in end.data


def test_kl_reader_study_commands(study, tmp_path, datasets):
    """`serve` answers on the port it names and stops on Ctrl+C with exit 0;
    bad input is one line."""
    import urllib.request

    kl = [sys.executable, "-m", "keras_lesions_cli.main"]
    server = subprocess.Popen([*kl, "reader-study", "serve", "--db", str(study.path),
                               "--port", "0"], stderr=subprocess.PIPE, text=True,
                              # Ctrl+C as a terminal gives it: a shell that ran these
                              # tests in the background ignores SIGINT, and so would
                              # the server, which inherits that
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = None
        for line in server.stderr:
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, "serve printed no address"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"Your name" in response.read()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            rest = server.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            server.kill()  # never left serving after the test
            server.communicate()
            raise
    assert server.returncode == 0, rest
    assert "every answer given is in the study database" in rest, rest

    junk = tmp_path / "junk.sqlite"
    junk.write_text("nope")
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    for args, message in (
            (["serve", "--db", str(tmp_path / "unmade.sqlite"), "--real", str(datasets[0]),
              "--synthetic", str(datasets[1]), "--port", str(port)],
             f"cannot listen on 127.0.0.1 port {port}: Address already in use"),
            (["report", str(junk)], "junk.sqlite: is not a reader-study database"),
            (["serve", "--db", str(study.path), "--n-real", "5"], "made with n-real 6, not 5"),
            (["serve", "--db", str(tmp_path / "new.sqlite"), "--real", str(datasets[0])],
             "a new study needs --real and --synthetic")):
        done = subprocess.run([*kl, "reader-study", *args], capture_output=True, text=True)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    taken.close()
    assert not (tmp_path / "unmade.sqlite").exists()  # refused before the study was made
    answer_all(study, "R1", lambda t: (t["truth_class"], "real"))
    done = subprocess.run([*kl, "reader-study", "report", str(study.path), "-o",
                           str(tmp_path / "t4")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| R1 | 100.0 (" in done.stdout and (tmp_path / "t4" / "table4.md").is_file()


# --------------------------------------------------------------------------- a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser_or_skip():
    """Selenium with Debian's chromium and chromium-driver, never a downloaded
    browser. Missing, the test is skipped, unless KL_REQUIRE_BROWSER=1 (as
    `.ci/run` sets, having installed them): then it fails."""
    ready = importlib.util.find_spec("selenium") is not None and all(
        shutil.which(p) for p in (CHROMIUM, CHROMEDRIVER))
    if not ready:
        if os.environ.get("KL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test needs selenium, {CHROMIUM} and {CHROMEDRIVER} "
                        "(apt-get install chromium chromium-driver)")
        pytest.skip("no selenium or Debian chromium + chromium-driver")


@pytest.fixture
def served(study):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(study), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # the driver's path given: Selenium Manager never looks for (or fetches) one
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_a_reader_in_a_real_browser(study, served, browser):
    """Keyboard only: type the name, answer with one key per answer, reload
    mid-study and resume at the same image and question, finish, and Table 4
    is what the scripted reader's answers give. On the way: a key that is no
    answer, two keys typed at once, and Enter and Space after a mouse click
    (which must not answer for the reader)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    truths = study.truths()
    key_of = {name: str(i + 1) for i, name in enumerate(study.class_names)}

    def at(position, question):
        def there(d):
            body = d.find_element(By.TAG_NAME, "body")
            return (body.get_attribute("data-position"), body.get_attribute("data-question"),
                    body.get_attribute("data-ready")) == (str(position), question, "1")
        wait.until(there)

    def shown_item():
        return int(browser.find_element(By.ID, "roi").get_attribute("src").rsplit("/", 1)[1])

    def press(keys):  # to whatever has the focus, as a reader's keyboard does
        ActionChains(browser).send_keys(keys).perform()

    def message():
        return browser.find_element(By.ID, "message").text

    browser.get(served + "/")
    name_box = browser.find_element(By.ID, "name")
    name_box.send_keys("Reader One")
    name_box.send_keys(Keys.ENTER)
    at(0, "class")
    assert "Welcome: you start at image 1." in browser.find_element(By.TAG_NAME, "main").text
    seen = []
    # the scripted reader: the right class on real ROIs, the next class on
    # synthetic ones; "real" on everything but the first synthetic ROI
    first_synthetic = True
    for position in range(study.n_items):
        if position == 4:  # the browser closes mid-study and comes back
            browser.get(served + "/")
            assert "Reader One" in browser.find_element(By.TAG_NAME, "table").text
            name_box = browser.find_element(By.ID, "name")
            name_box.send_keys("reader one")  # capitals do not matter
            name_box.send_keys(Keys.ENTER)
            at(4, "class")
            assert "you resume at image 5" in browser.find_element(By.TAG_NAME, "main").text
        item = shown_item()
        assert item == study.state("Reader One")["item"]
        seen.append(item)
        truth = truths[item]
        said = truth["truth_class"] if truth["is_real"] else other_class(truth["truth_class"],
                                                                          study.class_names)
        origin = "s" if (not truth["is_real"] and first_synthetic) else "r"
        first_synthetic = first_synthetic and truth["is_real"]
        if position == 0:
            press("x")  # not an answer: the page says which keys are
            wait.until(lambda d: "Keys for this question: 1, 2, 3" in message())
        if position == 2:  # both answers typed at once: both are saved, in order
            press(key_of[said] + origin)
            if position + 1 < study.n_items:
                at(position + 1, "class")
            continue
        if position == 3:  # a mouse click, then Enter and Space: not answers
            buttons = browser.find_elements(By.CSS_SELECTOR, "#q-class button")
            next(b for b in buttons if b.get_attribute("data-value") == said).click()
            at(position, "origin")
            press(origin)
            at(position + 1, "class")
            # Enter or Space must not "click" the button clicked last, which
            # would answer the next image's class; the "x" after them shows
            # the page still asks for the class (it would ask R or S if not)
            press(Keys.ENTER + Keys.SPACE + "x")
            wait.until(lambda d: "Keys for this question: 1, 2, 3" in message())
            state = study.state("Reader One")
            assert (state["position"], state["question"], state["given"]) == (4, "class", {})
            continue
        else:
            press(key_of[said])
            at(position, "origin")
        if position == 1:  # reload between the two answers of an image
            browser.refresh()
            at(1, "origin")
            assert shown_item() == item
        press(origin)
        if position + 1 < study.n_items:
            at(position + 1, "class")
    wait.until(ready.presence_of_element_located((By.ID, "finished")))
    assert "You have answered all 10 images (10 of 10)" in browser.find_element(
        By.TAG_NAME, "main").text
    assert seen == study.order("Reader One") and sorted(seen) == list(range(1, 11))

    row = table4(study)["readers"]["Reader One"]
    assert (row["real"]["correct"], row["real"]["n"]) == (6, 6)
    assert (row["synthetic"]["correct"], row["synthetic"]["n"]) == (0, 4)
    assert (row["total"]["correct"], row["total"]["n"]) == (6, 10)
    # right on the 6 real ROIs and on the one synthetic ROI it called synthetic
    assert (row["origin"]["correct"], row["synthetic_called_real"]["correct"]) == (7, 3)
    # and what `kl reader-study report` writes
    written = Path(write_table4(study, study.path.parent, stem="study-table4")["md"])
    assert "| Reader One | 100.0 (61.0–100.0) | 0.0 (0.0–49.0) | 6\\10 = 60.0" in \
        written.read_text()


# --------------------------------------------------------------------------- in an experiment


def test_evaluate_reader_study_is_checked_at_the_edge(study, tmp_path):
    from keras_lesions.config import ConfigError, load_config
    from keras_lesions.experiments.table4 import reader_study_of

    config = tmp_path / "c.yaml"
    config.write_text(f"name: x\nkind: classic-curve\nevaluate:\n  reader_study: {study.path}\n")
    with pytest.raises(ConfigError, match="evaluate.reader_study .* is for gan-curve"):
        load_config(config)
    config.write_text(f"name: x\nkind: gan-curve\nevaluate:\n  reader_study: {study.path}\n")
    loaded = load_config(config)
    assert reader_study_of(loaded, ["cyst", "metastasis", "hemangioma"]).n_items == 10
    with pytest.raises(StudyError, match="is a study of cyst, metastasis, hemangioma; the "
                                         "experiment's classes are benign, malignant"):
        reader_study_of(loaded, ["benign", "malignant"])
