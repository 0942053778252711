"""The mapping CSV of an import: UTF-8, comma-separated, one header line.

Rows keep their line numbers so that every error can name "line N" of the
CSV. Which columns are required depends on the importer (see
``import_folders`` and ``import_volumes``).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_lesions.data.readers.base import exception_line
from keras_lesions.errors import ImportSourceError


@dataclass
class CsvRow:
    """One data row of a mapping CSV.

    Attributes:
        line: its line number in the file (the header is line 1), for errors.
        values: column (lower-cased header) -> value, stripped.
    """

    line: int
    values: dict[str, str]


def read_csv_table(path: Path) -> tuple[list[str], list[CsvRow]]:
    """Header (lower-cased, stripped) and rows of a UTF-8 CSV, with line numbers.

    Blank lines are skipped.

    Raises:
        ImportSourceError: missing or unreadable file, not UTF-8, a NUL
            character, ';'-separated, a repeated header column, a row with
            another number of fields than the header, malformed quoting, or
            no header.
    """
    if not path.exists():
        raise ImportSourceError("no such mapping CSV", path)
    if not path.is_file():
        raise ImportSourceError("is a folder, expected a mapping CSV file" if path.is_dir()
                                else "is not a regular file (a device, pipe or socket), "
                                     "expected a mapping CSV file", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImportSourceError("is not UTF-8 text; save the mapping CSV as UTF-8", path) from None
    except OSError as exc:
        raise ImportSourceError(f"cannot read mapping CSV ({exception_line(exc, path)})",
                                path) from None
    _refuse_nul(text, path)
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[CsvRow] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                if len(header) == 1 and ";" in header[0]:
                    raise ImportSourceError("columns seem separated by ';'; use commas", path)
                if len(set(header)) != len(header):
                    raise ImportSourceError(f"header repeats a column: {header}", path)
                continue
            if len(fields) != len(header):
                raise ImportSourceError(
                    f"line {reader.line_num} has {len(fields)} fields, the header has "
                    f"{len(header)}", path)
            rows.append(CsvRow(reader.line_num, dict(zip(header, (f.strip() for f in fields)))))
    except csv.Error as exc:
        raise ImportSourceError(f"malformed CSV near line {reader.line_num} ({exc})",
                                path) from None
    if header is None:
        raise ImportSourceError("mapping CSV is empty", path)
    return header, rows


def _refuse_nul(text: str, path: Path) -> None:
    """Refuse NUL characters, naming the first line that holds one.

    Python's csv module accepts them, but they would end up in patient and
    lesion ids, which HDF5 cannot store (variable-length strings end at NUL).
    A CSV full of NULs was usually saved as UTF-16.
    """
    position = text.find("\x00")
    if position >= 0:
        line = text.count("\n", 0, position) + 1
        raise ImportSourceError(
            f"line {line} holds a NUL character (\\x00); save the mapping CSV as UTF-8 text "
            "(was it saved as UTF-16?)", path)


def read_mapping_csv(path: Path, required: Sequence[str],
                     optional: Sequence[str]) -> list[CsvRow]:
    """The rows of a mapping CSV that has the ``required`` columns.

    Args:
        path: the CSV file.
        required: columns it must have.
        optional: columns it may have (named in the error only).

    Returns:
        The rows, at least one.

    Raises:
        ImportSourceError: any problem of :func:`read_csv_table`, missing
            columns, or no rows.
    """
    header, rows = read_csv_table(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportSourceError(
            f"lacks column(s) {missing}; has {header} (needs {list(required)}, optionally "
            f"{list(optional)})", path)
    if not rows:
        raise ImportSourceError("mapping CSV has a header but no rows", path)
    return rows


def positive_float(text: str, column: str, row: CsvRow, csv_path: Path) -> float:
    """``text`` as a finite number > 0.

    Raises:
        ImportSourceError: naming the CSV line and column otherwise.
    """
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ImportSourceError(f"line {row.line}: {column} {text!r} is not a positive number",
                                csv_path)
    return value
