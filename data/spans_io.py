"""Writing span folders in the canonical CSV format CsvExampleGen reads.

CsvExampleGen infers each column's type from the text, so a column written as "180.0" in one
span and "180" in the next would change type and trip schema validation. Every writer of spans
goes through `write_span`, which formats values by the type the feature contract declares.

A span is every CSV file of its folder, whatever their names (`span-N/*.csv`, the pattern
CsvExampleGen reads); Conveyor writes one, `data.csv`.

Spans live in one of two namespaces, each with its own folder prefix and numbering:
  upstream  `<spans_root>/span-N/`: the data the world delivers (data/spans by default);
  feedback  `<home>/feedback/spans/feedback-N/`: labelled served traffic the CT controller turns
            into training data (ct/feedback.py), with a `manifest.json` saying where it came from.
Spans are written on a local disk; they are listed, and manifests read, on a local disk or, for a
cluster home, in object storage.
Feedback span N and upstream span N are different spans; a feedback span is never overwritten.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TextIO

from models import features

UPSTREAM, FEEDBACK = "upstream", "feedback"
NAMESPACES = (UPSTREAM, FEEDBACK)
DIR_PREFIXES = {UPSTREAM: "span-", FEEDBACK: "feedback-"}
SPAN_DIR_PREFIX = DIR_PREFIXES[UPSTREAM]
SPAN_FILE = "data.csv"  # the name Conveyor's writers give a span's file; readers take any *.csv
SPAN_FILES = "*.csv"  # a span's files in its folder: CsvExampleGen's pattern
MANIFEST_FILE = "manifest.json"  # not *.csv: CsvExampleGen never reads it
NAMESPACE_PROPERTY = "span_namespace"  # the custom property DataGate stamps on validated spans


def span_dir(spans_root: Path, span: int, namespace: str = UPSTREAM) -> Path:
    return Path(spans_root) / f"{DIR_PREFIXES[namespace]}{span}"


def file_pattern(namespace: str = UPSTREAM) -> str:
    """CsvExampleGen's input pattern for the spans of `namespace` (relative to their root)."""
    return f"{DIR_PREFIXES[namespace]}{{SPAN}}/{SPAN_FILES}"


def no_spans(spans_root: Path | str, namespace: str = UPSTREAM) -> str:
    """What to say when `spans_root` holds no span of `namespace`, naming the layout expected."""
    layout = file_pattern(namespace).replace("{SPAN}", "N")
    return f"no spans under {spans_root} (expected {layout}: CSV files of any name in {DIR_PREFIXES[namespace]}N/ folders)"


def namespace_of_pattern(pattern: str) -> str:
    """The namespace whose spans `pattern` reads (as file_pattern wrote it, or with the span filled in)."""
    for namespace, prefix in DIR_PREFIXES.items():
        if re.match(re.escape(prefix) + r"(\{SPAN\}|\d+)/", pattern):
            return namespace
    raise ValueError(f"{pattern!r} is not a span pattern of any namespace")


def label(span: int, namespace: str = UPSTREAM) -> str:
    """How a span is named to a person: "3" upstream, "feedback-3" in the feedback namespace."""
    return str(span) if namespace == UPSTREAM else f"{DIR_PREFIXES[namespace]}{span}"


def existing_spans(spans_root: Path | str, namespace: str = UPSTREAM) -> list[int]:
    """Span numbers of `namespace` with at least one CSV file under `spans_root`, ascending: the
    folders where CsvExampleGen's pattern (`span-N/*.csv`) matches. A URI (gs://, file://) is
    listed through TFX's fileio, in one listing: no span file is read."""
    prefix = DIR_PREFIXES[namespace]
    every_span = file_pattern(namespace).replace("{SPAN}", "*")
    if is_uri(spans_root):
        from tfx.dsl.io import fileio

        found = fileio.glob(f"{str(spans_root).rstrip('/')}/{every_span}")
        names = {os.path.basename(os.path.dirname(str(path).rstrip("/"))) for path in found}
    else:
        names = {path.parent.name for path in Path(spans_root).glob(every_span)}
    return sorted(int(n.removeprefix(prefix)) for n in names if n.startswith(prefix) and n.removeprefix(prefix).isdigit())


def span_files(spans_root: Path, span: int, namespace: str = UPSTREAM) -> list[Path]:
    """The CSV files of one span on a local disk, sorted: what CsvExampleGen ingests as the span."""
    return sorted(span_dir(spans_root, span, namespace).glob(SPAN_FILES))


def is_uri(path: Path | str) -> bool:
    """A URI (gs://, s3://, file://...) rather than a local path: the one test of it in Conveyor."""
    return "://" in str(path)


def format_value(column: str, value: object) -> str:
    """Canonical CSV text for `value` in `column` ('' for missing)."""
    if value is None or value == "":
        return ""
    kind = features.active().raw_types.get(column, "BYTES")
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
    columns: tuple[str, ...] | None = None,
    canonical: bool = True,
    namespace: str = UPSTREAM,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write `rows` as span `span` of `namespace` atomically (temp file + rename); returns the file path.

    With canonical=False values are written as given (used to produce deliberately broken spans).
    A feedback span is written once: FileExistsError if it exists. `manifest` (JSON) is written
    before the data file, so a span whose data is visible always has its manifest. `columns`: the
    contract's unless given.
    """
    folder = span_dir(spans_root, span, namespace)
    if namespace == FEEDBACK and span_files(spans_root, span, namespace):
        raise FileExistsError(f"feedback span {span} already exists at {folder}: feedback spans are never rewritten")
    if manifest is not None:
        write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return write_csv(folder / SPAN_FILE, rows, columns or features.active().csv_columns, canonical)


def read_manifest(spans_root: Path | str, span: int, namespace: str = FEEDBACK) -> dict[str, Any] | None:
    """A feedback span's manifest (None if it has none); `spans_root` may be a URI (TFX's fileio)."""
    if not is_uri(spans_root):
        path = span_dir(spans_root, span, namespace) / MANIFEST_FILE
        return json.loads(path.read_text()) if path.exists() else None
    from tfx.dsl.io import fileio

    uri = f"{str(spans_root).rstrip('/')}/{DIR_PREFIXES[namespace]}{span}/{MANIFEST_FILE}"
    if not fileio.exists(uri):
        return None
    with fileio.open(uri, "r") as handle:
        return json.loads(handle.read())


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[TextIO]:
    """A text handle whose content appears at `target` only once complete and durable (temp file,
    fsync, rename, fsync of the folder)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".partial")  # never matches *.csv
    try:
        with os.fdopen(fd, "w", newline="") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; spans are ordinary data files
        os.replace(tmp, target)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(target: Path, text: str) -> Path:
    """Write `text` to `target` atomically."""
    with _atomic(target) as out:
        out.write(text)
    return Path(target)


def write_csv(
    target: Path, rows: Iterable[Mapping[str, object]], columns: tuple[str, ...], canonical: bool = True
) -> Path:
    """Write `rows` to `target` atomically in the canonical format (columns outside the feature
    contract are written as text)."""
    with _atomic(target) as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([format_value(c, row.get(c)) if canonical else row.get(c, "") for c in columns])
    return Path(target)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
