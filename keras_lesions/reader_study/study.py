"""The reader-study database: its images, its readers and their answers.

One SQLite file (the standard library's ``sqlite3``) holds the whole study,
so it can be copied, archived and reported on without the datasets:

- ``meta``: what the study was made from (the datasets, their sizes, the seed).
- ``items``: every ROI shown, as the PNG the readers see, with its truth (the
  class and whether it is real).
- ``readers`` and ``orders``: each reader's own random order of the items,
  drawn once when the reader starts and stored, so it is fixed for them.
- ``answers``: one row per answer (a reader, an item, a question, a value),
  written in a transaction of its own the moment it is given. The primary
  key makes an answer final: a second answer to the same question is refused.

Per image a reader answers two questions, in this order: the class
("class") and whether the ROI is real ("origin"), as in Frid-Adar §4.4.

The seed picks which lesions are in the study (reproducible). The item ids
and the readers' orders come from the operating system's randomness
instead, and are stored: anything derived from a known seed could be
recomputed from this open-source code by a reader, who would then know
which ROIs are real.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import os
import secrets
import sqlite3
import unicodedata
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from keras_lesions.errors import KerasLesionsError

FORMAT = "keras-lesions reader study"
FORMAT_VERSION = 2  # 2: readers' keys and the study token
QUESTIONS = ("class", "origin")
ORIGINS = ("real", "synthetic")
MAX_NAME = 40
MAX_CLASSES = 9  # the study page answers a class with one digit key
NAME_PUNCTUATION = " ._'-"
# §4.4: "182 real lesions and 120 additional synthesized lesions"
PAPER_N_SYNTHETIC = 120

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    truth_class TEXT NOT NULL,
    is_real INTEGER NOT NULL CHECK (is_real IN (0, 1)),
    lesion_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    png BLOB NOT NULL
);
CREATE TABLE readers (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,  -- the name case- and space-folded: "dr a" resumes "Dr A"
    started TEXT NOT NULL
);
CREATE TABLE orders (
    reader TEXT NOT NULL REFERENCES readers (name),
    position INTEGER NOT NULL,
    item INTEGER NOT NULL REFERENCES items (id),
    PRIMARY KEY (reader, position),
    UNIQUE (reader, item)
);
CREATE TABLE answers (
    reader TEXT NOT NULL REFERENCES readers (name),
    item INTEGER NOT NULL REFERENCES items (id),
    question TEXT NOT NULL CHECK (question IN ('class', 'origin')),
    value TEXT NOT NULL,
    answered TEXT NOT NULL,
    PRIMARY KEY (reader, item, question)
);
"""


class StudyError(KerasLesionsError):
    """A reader study cannot be made or opened (bad datasets, a damaged file)."""


class AnswerRefused(KerasLesionsError):
    """An answer or a reader the study refuses; ``status`` is the HTTP status
    the web application answers with (400 bad, 404 unknown, 409 conflict)."""

    def __init__(self, problem: str, status: int = 400):
        super().__init__(problem)
        self.status = status


@dataclass(frozen=True)
class Item:
    """One ROI of the study, before it has an id."""

    truth_class: str
    is_real: bool
    lesion_id: str
    patient_id: str
    png: bytes


# --------------------------------------------------------------------------- making a study


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise StudyError(f"{what} must be a whole number of lesions, 0 or more, got {value!r}")
    return int(value)


def png_bytes(image: np.ndarray) -> bytes:
    """A [0, 1] float image as an 8-bit greyscale PNG, without metadata (a
    text chunk could tell a reader where an image came from) and without
    compression: a compressed file's size follows the image's texture, which
    differs between real and synthetic ROIs and shows in a browser's tools."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def balanced_counts(n: int, available: dict[str, int]) -> dict[str, int]:
    """n spread as evenly as possible over the classes (the first classes
    take the remainder), as the paper's 120 = 3 × 40 synthetic lesions."""
    names = list(available)
    return {c: n // len(names) + (1 if i < n % len(names) else 0) for i, c in enumerate(names)}


def study_items(real, synthetic, n_real: int, n_synthetic: int, seed: int, *,
                real_path="<real>", synthetic_path="<synthetic>") -> list[Item]:
    """The study's ROIs: ``n_real`` real lesions drawn at random (keeping the
    dataset's class mix) and ``n_synthetic`` synthetic ones spread evenly over
    the classes the synthetic set has, each shown exactly as the other kind:
    windowed (HU datasets) and resized to the networks' input size, the size
    the synthetic lesions are drawn at.

    Raises:
        StudyError: negative or too large counts, a real dataset that is
            synthetic, classes of the synthetic set the real one lacks, or
            images of different sizes (a reader would tell them apart by it).
    """
    from keras_lesions.data.preview import preview_image

    n_real = _count(n_real, "the number of real lesions")
    n_synthetic = _count(n_synthetic, "the number of synthetic lesions")
    if n_real + n_synthetic == 0:
        raise StudyError("a study needs at least one lesion: n-real and n-synthetic are both 0")
    if len(real.class_names) > MAX_CLASSES:
        raise StudyError(f"has {len(real.class_names)} classes; the study page answers the "
                         f"class with one digit key, so at most {MAX_CLASSES}", real_path)
    if real.extra.get("synthetic"):
        raise StudyError("is a synthetic dataset; --real takes the real lesions", real_path)
    unknown = [c for c in synthetic.class_names if c not in real.class_names]
    if unknown:
        raise StudyError(f"has class {unknown[0]!r}, which the real dataset ({real_path}) "
                         f"lacks; its classes are {', '.join(real.class_names)}",
                         synthetic_path)
    if n_real > len(real):
        raise StudyError(f"has {len(real)} lesions; the study asks for {n_real} real ones",
                         real_path)
    if n_synthetic and real.input_size != synthetic.input_size:
        raise StudyError(f"holds {synthetic.input_size}x{synthetic.input_size} images and the "
                         f"real lesions are shown at {real.input_size}x{real.input_size} (the "
                         "input size): a reader would tell them apart by their sharpness",
                         synthetic_path)
    rng = np.random.default_rng(seed)
    items = []
    for index in sorted(rng.choice(len(real), size=n_real, replace=False).tolist()):
        lesion = real.lesions[index]
        items.append(Item(real.class_names[lesion.label], True, lesion.lesion_id,
                          lesion.patient_id, png_bytes(preview_image(real, index))))
    synthetic_labels = np.asarray(synthetic.labels)
    present = {c: int(np.sum(synthetic_labels == i))
               for i, c in enumerate(synthetic.class_names) if np.any(synthetic_labels == i)}
    if n_synthetic and not present:
        raise StudyError("has no lesions", synthetic_path)
    for name, count in (balanced_counts(n_synthetic, present) if n_synthetic else {}).items():
        if count > present[name]:
            raise StudyError(f"has {present[name]} {name} lesions; an even spread of "
                             f"{n_synthetic} synthetic lesions needs {count}", synthetic_path)
        members = np.flatnonzero(synthetic_labels == synthetic.class_names.index(name))
        for index in sorted(rng.choice(members, size=count, replace=False).tolist()):
            lesion = synthetic.lesions[index]
            items.append(Item(name, False, lesion.lesion_id, lesion.patient_id,
                              png_bytes(preview_image(synthetic, index))))
    return items


def _dataset_stamp(dataset, path) -> dict:
    return {"path": str(Path(path).resolve()), "lesions": len(dataset),
            "created": dataset.created_at,
            "description": dataset.description}


def create_study(db_path: str | os.PathLike, real_path: str | os.PathLike,
                 synthetic_path: str | os.PathLike, *, n_real: int | None = None,
                 n_synthetic: int = PAPER_N_SYNTHETIC, seed: int = 0) -> "Study":
    """Make a new study database from a real and a synthetic dataset file.

    Everything is checked and every image made before anything is written;
    the file appears complete or not at all (written beside its place, then
    created there only if no file has appeared meanwhile).

    Args:
        n_real: real lesions shown (default: every lesion of the real dataset,
            as the paper showed all 182).
        n_synthetic: synthetic lesions shown, spread evenly over the classes
            (default 120, as in §4.4).
        seed: which lesions are drawn (the item ids and the readers' orders
            are drawn from the system's randomness, not from it).

    Raises:
        StudyError: the database exists, and everything ``study_items`` refuses.
        DatasetError: a dataset file that cannot be read.
    """
    from keras_lesions.data import read_dataset
    from keras_lesions.io import atomic_path

    db_path = Path(db_path)
    if db_path.exists():
        raise StudyError("exists already: open it to resume the study, or give a new file",
                         db_path)
    if Path(real_path).resolve() == Path(synthetic_path).resolve():
        raise StudyError("is given as both the real and the synthetic dataset", real_path)
    real = read_dataset(real_path)
    synthetic = read_dataset(synthetic_path)
    items = study_items(real, synthetic, len(real) if n_real is None else n_real, n_synthetic,
                        seed, real_path=real_path, synthetic_path=synthetic_path)
    ids = list(range(1, len(items) + 1))
    secrets.SystemRandom().shuffle(ids)  # not from the seed: see the module's docstring
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "seed": int(seed),
            "token": secrets.token_hex(8),  # in image addresses: no cache mixes two studies
            "created": _now(), "class_names": list(real.class_names),
            "real": _dataset_stamp(real, real_path),
            "synthetic": _dataset_stamp(synthetic, synthetic_path),
            "n_real": sum(i.is_real for i in items),
            "n_synthetic": sum(not i.is_real for i in items),
            "image_size": int(real.input_size)}
    try:
        with atomic_path(db_path, suffix=".sqlite", exclusive=True) as tmp:
            with closing(sqlite3.connect(tmp)) as conn, conn:
                conn.executescript(SCHEMA)
                conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in meta.items()])
                conn.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
                    [(int(i), item.truth_class, int(item.is_real), item.lesion_id,
                      item.patient_id, item.png) for i, item in zip(ids, items)])
    except FileExistsError:
        raise StudyError("was created by another process meanwhile", db_path) from None
    return Study(db_path)


@contextmanager
def _transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE (the write lock first, so a check and the write it
    allows cannot interleave with another request's) ... COMMIT, or ROLLBACK
    on any error, unless SQLite has rolled back itself (a full disk)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- names


def check_reader_name(name) -> str:
    """A reader's name, Unicode-composed (NFC) with its runs of spaces made
    one; refused unless it is 1 to 40 letters, digits, spaces and . _ ' -,
    starting with a letter or a digit."""
    if not isinstance(name, str):
        raise AnswerRefused("a reader's name is text")
    name = " ".join(unicodedata.normalize("NFC", name).split())
    if not name:
        raise AnswerRefused("give your name to start (the study keeps each reader's answers "
                            "under it)")
    if len(name) > MAX_NAME:
        raise AnswerRefused(f"a reader's name has at most {MAX_NAME} characters")
    if not name[0].isalnum() or not all(c.isalnum() or c in NAME_PUNCTUATION for c in name):
        raise AnswerRefused("a reader's name is letters, digits, spaces and . _ ' - "
                            "(starting with a letter or a digit)")
    return name


def reader_key(name: str) -> str:
    """What identifies a reader: the checked name, case-folded ("dr a" is "Dr A")."""
    return check_reader_name(name).casefold()


# --------------------------------------------------------------------------- an open study


class Study:
    """An existing study database.

    Every method opens its own connection (the web application answers from
    several threads) and writes in one transaction.

    Raises:
        StudyError: the file is missing or is not a reader-study database.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise StudyError("no such study database", self.path)
        damaged = StudyError("is not a reader-study database (unreadable or damaged)",
                             self.path)
        try:
            with self._connection() as conn:
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                self.meta = {k: json.loads(v) for k, v in rows.items()}
                if self.meta.get("format") != FORMAT:
                    raise StudyError("is not a reader-study database", self.path)
                if self.meta.get("version") != FORMAT_VERSION:
                    raise StudyError(f"is a version {self.meta.get('version')} study; this "
                                     f"keras-lesions reads version {FORMAT_VERSION}", self.path)
                self.n_items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        except (sqlite3.DatabaseError, json.JSONDecodeError, ValueError):
            raise damaged from None
        self.class_names: list[str] = list(self.meta["class_names"])

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # mode=rw: never create a file where the study should be
        conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=rw", uri=True, timeout=30,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------ readers

    def readers(self) -> list[str]:
        with self._connection() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM readers ORDER BY started, name")]

    def start_reader(self, name: str) -> tuple[str, bool]:
        """The reader of that name, added with a random order of their own if
        new; a returning reader (the name in any case and spacing) keeps
        theirs. Returns (the reader's name as first given, whether new)."""
        name = check_reader_name(name)
        order = list(range(1, self.n_items + 1))
        secrets.SystemRandom().shuffle(order)  # not from the seed: see the module's docstring
        with self._connection() as conn, _transaction(conn):
            known = conn.execute("SELECT name FROM readers WHERE key = ?",
                                 (reader_key(name),)).fetchone()
            if known:
                return known[0], False
            conn.execute("INSERT INTO readers VALUES (?, ?, ?)",
                         (name, reader_key(name), _now()))
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                             [(name, p, item) for p, item in enumerate(order)])
        return name, True

    def _known(self, conn, name) -> str:
        """The stored name of the reader ``name`` names (in any case and spacing)."""
        try:
            key = reader_key(name)
        except AnswerRefused:
            key = None
        row = conn.execute("SELECT name FROM readers WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise AnswerRefused(f"no reader {name!r} in this study: start from the first page",
                                status=404)
        return row[0]

    def _state(self, conn, name: str) -> dict:
        answered = dict(conn.execute(
            "SELECT o.position, COUNT(a.question) FROM orders o JOIN answers a "
            "ON a.reader = o.reader AND a.item = o.item WHERE o.reader = ? "
            "GROUP BY o.position", (name,)).fetchall())
        done = sum(1 for n in answered.values() if n == len(QUESTIONS))
        state = {"reader": name, "total": self.n_items, "done": done,
                 "finished": done == self.n_items}
        if not state["finished"]:
            position = done
            item = conn.execute("SELECT item FROM orders WHERE reader = ? AND position = ?",
                                (name, position)).fetchone()[0]
            given = dict(conn.execute("SELECT question, value FROM answers WHERE reader = ? "
                                      "AND item = ?", (name, item)).fetchall())
            state.update(position=position, item=int(item),
                         question=next(q for q in QUESTIONS if q not in given),
                         given=given)
        return state

    def state(self, name: str) -> dict:
        """Where the reader is: {reader, total, done, finished} and, unless
        finished, the current position (0-based), item id, the question
        asked and the answers already given to this item."""
        with self._connection() as conn:
            return self._state(conn, self._known(conn, name))

    def order(self, name: str) -> list[int]:
        """The reader's order of the item ids, as stored when they started."""
        with self._connection() as conn:
            name = self._known(conn, name)
            return [r[0] for r in conn.execute("SELECT item FROM orders WHERE reader = ? "
                                               "ORDER BY position", (name,))]

    def allowed(self, question: str) -> tuple[str, ...]:
        if question == "class":
            return tuple(self.class_names)
        if question == "origin":
            return ORIGINS
        raise AnswerRefused(f"unknown question {question!r}: the questions are "
                            f"{', '.join(QUESTIONS)}")

    def answer(self, name: str, position, question: str, value: str) -> dict:
        """Save one answer, in a transaction of its own, and return the new
        state. Only the reader's current question may be answered, once.

        Raises:
            AnswerRefused: an unknown reader (404), a bad position, question
                or value (400), an answer already given or not to the current
                question, such as from a stale page (409).
        """
        if isinstance(position, bool) or not isinstance(position, int):
            raise AnswerRefused("the position is a whole number")
        allowed = self.allowed(question)
        if value not in allowed:
            raise AnswerRefused(f"{value!r} is not an answer to the {question} question; the "
                                f"answers are {', '.join(allowed)}")
        with self._connection() as conn:
            with _transaction(conn):  # the checks and the write, one transaction
                name = self._known(conn, name)
                if not 0 <= position < self.n_items:
                    raise AnswerRefused(f"no image {position + 1} in this study of "
                                        f"{self.n_items}")
                item = conn.execute("SELECT item FROM orders WHERE reader = ? AND position = ?",
                                    (name, position)).fetchone()[0]
                if conn.execute("SELECT 1 FROM answers WHERE reader = ? AND item = ? AND "
                                "question = ?", (name, item, question)).fetchone():
                    raise AnswerRefused(f"image {position + 1} already has your {question} "
                                        "answer; answers are final", status=409)
                now = self._state(conn, name)
                if now["finished"] or (now["position"], now["question"]) != (position, question):
                    raise AnswerRefused("that is not the question you are on (the page is out "
                                        "of date): reload it", status=409)
                conn.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?)",
                             (name, item, question, value, _now()))
            return self._state(conn, name)

    # ------------------------------------------------------------------ images and results

    def image_png(self, item: int) -> bytes | None:
        """The PNG of item ``item`` (None for no such item): images come only
        from the study's own rows, never from a path."""
        with self._connection() as conn:
            row = conn.execute("SELECT png FROM items WHERE id = ?", (int(item),)).fetchone()
        return None if row is None else bytes(row[0])

    def responses(self) -> list[dict]:
        """Every image a reader answered both questions of: {reader, item,
        position, truth_class, is_real, said_class, said_real}."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT o.reader, o.item, o.position, i.truth_class, i.is_real, c.value, "
                "r.value FROM orders o JOIN items i ON i.id = o.item "
                "JOIN answers c ON c.reader = o.reader AND c.item = o.item AND "
                "c.question = 'class' JOIN answers r ON r.reader = o.reader AND "
                "r.item = o.item AND r.question = 'origin' ORDER BY o.reader, o.position"
            ).fetchall()
        return [{"reader": r[0], "item": r[1], "position": r[2], "truth_class": r[3],
                 "is_real": bool(r[4]), "said_class": r[5], "said_real": r[6] == "real"}
                for r in rows]

    def answer_count(self) -> int:
        """How many answers the study holds (answers are never removed, so a
        report that read this many has read them all)."""
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def truths(self) -> dict[int, dict]:
        """{item id: {truth_class, is_real}}: for the report and scripted
        readers; no page of the web application shows it."""
        with self._connection() as conn:
            return {r[0]: {"truth_class": r[1], "is_real": bool(r[2])}
                    for r in conn.execute("SELECT id, truth_class, is_real FROM items")}

    def progress(self) -> dict[str, dict]:
        """Each reader's {done, total, finished}."""
        with self._connection() as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM readers ORDER BY started, "
                                                "name")]
            return {n: {k: v for k, v in self._state(conn, n).items()
                        if k in ("done", "total", "finished")} for n in names}


def open_or_create(db_path: str | os.PathLike, real_path=None, synthetic_path=None, *,
                   n_real: int | None = None, n_synthetic: int | None = None,
                   seed: int | None = None) -> tuple[Study, bool]:
    """What ``kl reader-study serve`` opens: the existing study (every
    argument given must match what it was made from), or a new one from the
    datasets. Returns (study, created).

    Raises:
        StudyError: a new study without both datasets, or arguments that do
            not match the existing study's.
    """
    db_path = Path(db_path)
    if db_path.exists():
        study = Study(db_path)
        asked = {"real": real_path, "synthetic": synthetic_path}
        for role, path in asked.items():
            if path is not None and str(Path(path).resolve()) != study.meta[role]["path"]:
                raise StudyError(f"was made from --{role} {study.meta[role]['path']}, not {path}:"
                                 " give only --db to resume it, or a new --db", db_path)
        for key, value in (("n_real", n_real), ("n_synthetic", n_synthetic), ("seed", seed)):
            if value is not None and value != study.meta[key]:
                raise StudyError(f"was made with {key.replace('_', '-')} {study.meta[key]}, not "
                                 f"{value}: give only --db to resume it, or a new --db", db_path)
        return study, False
    if real_path is None or synthetic_path is None:
        raise StudyError("does not exist yet: a new study needs --real and --synthetic", db_path)
    return create_study(db_path, real_path, synthetic_path, n_real=n_real,
                        n_synthetic=PAPER_N_SYNTHETIC if n_synthetic is None else n_synthetic,
                        seed=0 if seed is None else seed), True


__all__: Sequence[str] = ("AnswerRefused", "Study", "StudyError", "check_reader_name",
                          "create_study", "open_or_create", "reader_key", "study_items")
