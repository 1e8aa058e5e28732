"""Reading dataset files so that every failure names the file and the line or record (issue 18, item 5).

Readers use these instead of bare ``open`` / ``csv`` / ``int``: a corrupted ``.gz``, bytes that are not
UTF-8 text, a CSV row with a missing or empty column, a number that does not parse, or a label
outside the class range become one :class:`~runner.errors.UserError` line naming the file and the
line (CSV, jsonl, txt) or the record index (binary arrays).
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.errors import UserError

__all__ = ["read_bytes", "read_text", "csv_rows", "parse_int", "parse_float", "check_labels"]

_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)


def read_bytes(path: str) -> bytes:
    """The file's bytes, decompressed when it ends in ``.gz``."""
    path = str(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except _READ_ERRORS as err:
        kind = "a corrupted or truncated .gz file" if path.endswith(".gz") else "unreadable"
        raise UserError(f"{path} is {kind} ({type(err).__name__}: {err})") from None


def read_text(path: str) -> str:
    """The file as UTF-8 text (``.gz`` decompressed); bytes that are not text name the line."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path}, line {line}: not UTF-8 text (byte {data[err.start]:#04x}); is it the right file?"
        ) from None


def csv_rows(
    path: str, required: Sequence[str], non_empty: Sequence[str] = ()
) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV file with a header. A missing header column, a row with too few
    or too many fields, or an empty value in one of ``non_empty`` is a UserError naming the line."""
    reader = csv.DictReader(io.StringIO(read_text(path)))
    try:
        header = reader.fieldnames
    except csv.Error as err:
        raise UserError(f"{path}, line 1: not a CSV header ({err})") from None
    if not header:
        raise UserError(f"{path} is empty; expected a CSV header with {', '.join(required)}")
    missing = [c for c in required if c not in header]
    if missing:
        raise UserError(f"{path}, line 1: the header lacks column(s) {', '.join(missing)}")
    rows = []
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise UserError(f"{path}, line {line}: more fields than the {len(header)} header columns")
            absent = [c for c in required if row.get(c) is None]
            if absent:
                raise UserError(f"{path}, line {line}: missing column(s) {', '.join(absent)}")
            empty = [c for c in non_empty if not (row.get(c) or "").strip()]
            if empty:
                raise UserError(f"{path}, line {line}: empty field(s) {', '.join(empty)}")
            rows.append((line, row))
    except csv.Error as err:
        raise UserError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from None
    return rows


def parse_int(
    path: str, line: int, column: str, value: Any, low: int | None = None, high: int | None = None
) -> int:
    """``int(value)`` (``"3.0"`` allowed), a UserError naming file, line and column otherwise or when
    outside ``[low, high]``."""
    try:
        number = float(str(value).strip())
        if not number.is_integer():
            raise ValueError
        result = int(number)
    except (TypeError, ValueError):
        raise UserError(f"{path}, line {line}: {column}={value!r} is not an integer") from None
    if (low is not None and result < low) or (high is not None and result > high):
        bounds = f"{'' if low is None else low}..{'' if high is None else high}"
        raise UserError(f"{path}, line {line}: {column}={result} is outside {bounds}")
    return result


def parse_float(path: str, line: int, column: str, value: Any) -> float:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        raise UserError(f"{path}, line {line}: {column}={value!r} is not a number") from None


def check_labels(path: str, labels: np.ndarray, num_classes: int, first_record: int = 0) -> None:
    """UserError naming the file and the first record whose label is outside ``0..num_classes-1``."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise UserError(
            f"{path}: record {first_record + i} has label {int(labels[i])}, outside the {num_classes} classes "
            f"0..{num_classes - 1} ({bad.size} such record(s))"
        )
