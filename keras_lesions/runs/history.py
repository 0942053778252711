"""``history.csv``: one row per finished epoch of a training (no TensorFlow here)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from keras_lesions.io import write_text
from keras_lesions.runs.folder import RESTART_HINT, RunError

HISTORY = "history.csv"


def write_history(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    """``history.csv``: one row per finished epoch, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_history(path: Path, before_epoch: int | None = None) -> list[dict]:
    """The rows of ``history.csv`` (epochs before ``before_epoch`` only, if given).

    Raises:
        RunError: a history that cannot be parsed.
    """
    if before_epoch is not None and before_epoch <= 0 or not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                    for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as exc:
        raise RunError(f"cannot be read ({type(exc).__name__}); {RESTART_HINT}", path) from None
    return rows if before_epoch is None else [r for r in rows if r["epoch"] < before_epoch]
