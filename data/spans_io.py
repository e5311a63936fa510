"""Writing span folders in the canonical CSV format CsvExampleGen reads.

CsvExampleGen infers each column's type from the text, so a column written as "180.0" in one
span and "180" in the next would change type and trip schema validation. Every writer of spans
goes through `write_span`, which formats values by the type the feature contract declares.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from models import features

SPAN_DIR_PREFIX = "span-"
SPAN_FILE = "data.csv"


def span_dir(spans_root: Path, span: int) -> Path:
    return Path(spans_root) / f"{SPAN_DIR_PREFIX}{span}"


def existing_spans(spans_root: Path) -> list[int]:
    """Span numbers that have a data file under `spans_root`, ascending."""
    root = Path(spans_root)
    if not root.is_dir():
        return []
    spans = []
    for child in root.iterdir():
        suffix = child.name.removeprefix(SPAN_DIR_PREFIX)
        if child.name.startswith(SPAN_DIR_PREFIX) and suffix.isdigit() and (child / SPAN_FILE).exists():
            spans.append(int(suffix))
    return sorted(spans)


def format_value(column: str, value: object) -> str:
    """Canonical CSV text for `value` in `column` ('' for missing)."""
    if value is None or value == "":
        return ""
    kind = features.RAW_TYPES.get(column, "BYTES")
    if kind == "INT":
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"column {column!r} is INT but got {value!r}")
        return str(int(number))
    if kind == "FLOAT":
        number = float(value)
        if math.isnan(number):
            return ""
        return repr(number)  # always has a '.', an 'e', or 'inf'
    return str(value)


def write_span(
    spans_root: Path,
    span: int,
    rows: Iterable[Mapping[str, object]],
    columns: tuple[str, ...] = features.CSV_COLUMNS,
    canonical: bool = True,
) -> Path:
    """Write `rows` as span `span` atomically (temp file + rename); returns the file path.

    With canonical=False values are written as given (used to produce deliberately broken spans).
    """
    return write_csv(span_dir(spans_root, span) / SPAN_FILE, rows, columns, canonical)


def write_csv(
    target: Path, rows: Iterable[Mapping[str, object]], columns: tuple[str, ...], canonical: bool = True
) -> Path:
    """Write `rows` to `target` atomically in the canonical format (columns outside the feature
    contract are written as text)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".partial")  # never matches *.csv
    try:
        with os.fdopen(fd, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            for row in rows:
                writer.writerow(
                    [format_value(c, row.get(c)) if canonical else row.get(c, "") for c in columns]
                )
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; spans are ordinary data files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
