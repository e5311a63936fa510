"""What the cells of a span's CSV files hold, counted exactly, with line numbers for the odd ones.

CsvExampleGen keeps an empty cell as a present feature with no values, and it infers a column's
type from all of its text, so neither TFDV presence nor a few odd rows show up the way a person
would describe them. This audit reads the CSV text itself and counts, per column of the feature
contract (models/features.py):

  empty          cells with no text: the value is missing
  invalid        text that is not a value of the column's type: "180 sec" or "5.0" in an INT
                 column, text, NaN, infinity or more than a float32 holds in a FLOAT column
  out_of_domain  numbers or strings outside the column's Domain (e.g. trip_start_month = 1e308)

and, per file, the header, the data rows and the rows that repeat the header (which CsvExampleGen
reads as data). Blank lines hold no row, as for CsvExampleGen. The same pass measures the contract's
cross-column plausibility rules on the rows (data/plausibility.py).

Cost is linear in the cells: pyarrow parses the file in blocks and each distinct text of a column
in a block is judged once. Only when something is invalid, out of its domain or a repeated header
does a second pass (Python's csv reader, which counts physical lines) find the first lines that
hold them, stopping as soon as it has them.
"""
from __future__ import annotations

import csv
import functools
import io
import math
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable

from data import plausibility
from models import features

EXAMPLES = 3  # lines kept per finding
BLOCK_BYTES = 1 << 24
FLOAT32_MAX = 3.4028234663852886e38
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
OK, EMPTY, INVALID, OUT_OF_DOMAIN = "ok", "empty", "invalid", "out_of_domain"
LOCATED = (INVALID, OUT_OF_DOMAIN)  # findings whose lines the second pass looks up


class AuditError(ValueError):
    """A span file that cannot be read as CSV at all; the message names the file."""


@dataclass(frozen=True)
class Domain:
    """The values a column may hold: a numeric range (either end open) or a set of strings."""

    low: float | None = None
    high: float | None = None
    values: frozenset[str] | None = None

    def contains(self, value: float | str) -> bool:
        if self.values is not None:
            return value in self.values
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.values is not None:
            return "{" + ", ".join(sorted(self.values)) + "}"
        if self.high is None:
            return f"≥ {self.low:g}"
        if self.low is None:
            return f"≤ {self.high:g}"
        return f"{self.low:g}..{self.high:g}"


@dataclass
class Finding:
    """Cells of one column that fell in one class: how many, which texts, and where."""

    rows: int = 0
    texts: dict[str, int] = field(default_factory=dict)  # text -> rows (up to EXAMPLES distinct texts)
    lines: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, text), located ones only

    def add(self, text: str, rows: int) -> None:
        self.rows += rows
        if text in self.texts or len(self.texts) < EXAMPLES:
            self.texts[text] = self.texts.get(text, 0) + rows


@dataclass
class ColumnAudit:
    kind: str  # "INT", "FLOAT" or "BYTES", the contract's type
    domain: Domain | None = None
    empty: Finding = field(default_factory=Finding)
    invalid: Finding = field(default_factory=Finding)
    out_of_domain: Finding = field(default_factory=Finding)
    _verdicts: dict[str, str] = field(default_factory=dict, repr=False)  # text -> verdict, for texts seen

    def judge(self, text: str) -> str:
        verdict = self._verdicts.get(text)
        if verdict is None:
            verdict = judge(self.kind, self.domain, text)
            if len(self._verdicts) < 100_000:  # bounded: unique floats need no memory of their own
                self._verdicts[text] = verdict
        return verdict


@dataclass
class FileAudit:
    name: str
    header: list[str] | None  # None: the file is empty (0 bytes)
    rows: int = 0  # data rows, repeated headers included (CsvExampleGen reads them as data)
    header_repeats: int = 0
    header_lines: list[int] = field(default_factory=list)  # where the header repeats (first few)

    @property
    def missing_columns(self) -> list[str]:
        return [c for c in features.active().csv_columns if self.header is not None and c not in self.header]

    @property
    def unknown_columns(self) -> list[str]:
        return [c for c in self.header or [] if c not in features.active().raw_types]


@dataclass
class SpanAudit:
    files: list[FileAudit]
    columns: dict[str, ColumnAudit]
    plausibility: list[plausibility.Tally] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def header_repeats(self) -> int:
        return sum(f.header_repeats for f in self.files)

    def rows_with_column(self, column: str) -> int:
        """Data rows (repeated headers excluded) of the files whose header names `column`."""
        return sum(f.rows - f.header_repeats for f in self.files if f.header is not None and column in f.header)

    def completeness(self, column: str) -> float | None:
        """Share of data rows with a value in `column` (None: no such rows)."""
        rows = self.rows_with_column(column)
        return (rows - self.columns[column].empty.rows) / rows if rows else None


def judge(kind: str, domain: Domain | None, text: str) -> str:
    """OK, EMPTY, INVALID or OUT_OF_DOMAIN for one cell of a column of type `kind`."""
    if text == "":
        return EMPTY
    if kind == "BYTES":
        return OUT_OF_DOMAIN if domain is not None and not domain.contains(text) else OK
    try:
        number = float(text)
    except ValueError:
        return INVALID
    if math.isnan(number):
        return INVALID
    if domain is not None and not domain.contains(number):  # 1e308 in a month column: say so, with the value
        return OUT_OF_DOMAIN
    if kind == "INT":
        if not _INTEGER.fullmatch(text) or not INT64_MIN <= int(text) <= INT64_MAX:
            return INVALID
    elif math.isinf(number) or abs(number) > FLOAT32_MAX:
        return INVALID
    return OK


def _header(stream: BinaryIO) -> tuple[list[str] | None, bool]:
    """The header row and whether any row follows it."""
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    header = next(reader, None)
    following = next((row for row in reader if row), None)
    return header, following is not None


def _count(
    name: str, stream: BinaryIO, header: list[str], columns: dict[str, ColumnAudit], audit: FileAudit,
    tallies: list[plausibility.Tally],
) -> None:
    """First pass: count every cell of the contract's columns (pyarrow, block by block)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=False
            ),
        )
        positions = [(i, columns[c]) for i, c in enumerate(header) if c in columns]
        measured = {c for t in tallies for c in t.reads}
        for batch in reader:
            if tallies:
                cells = {c: batch.column(i) for i, c in enumerate(header) if c in measured}
                for tally in tallies:
                    tally.add(cells)
            audit.rows += batch.num_rows
            texts_of = [(i, column, batch.column(i)) for i, column in positions]
            repeated = 0
            if texts_of:
                same = functools.reduce(pc.and_, (pc.equal(texts, header[i]) for i, _, texts in texts_of))
                repeated = pc.sum(same).as_py() or 0
            audit.header_repeats += repeated
            for i, column, texts in texts_of:
                for entry in pc.value_counts(texts).to_pylist():
                    text, rows = entry["values"], entry["counts"]
                    if text == header[i]:
                        rows -= repeated  # a repeated header is a finding of its own, not a value
                    if rows and (verdict := column.judge(text)) != OK:
                        getattr(column, verdict).add(text, rows)
    except pa.ArrowInvalid as exc:
        raise AuditError(f"{name} is not readable as CSV: {exc}") from exc


def _locate(name: str, stream: BinaryIO, columns: dict[str, ColumnAudit], audit: FileAudit) -> None:
    """Second pass: the first lines holding each invalid or out-of-domain text, and repeated headers."""
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    header = next(reader)
    wanted = [
        (i, getattr(columns[c], kind), set(getattr(columns[c], kind).texts))
        for i, c in enumerate(header)
        if c in columns
        for kind in LOCATED
        if getattr(columns[c], kind).texts
    ]
    repeats_wanted = min(audit.header_repeats, EXAMPLES)
    for row in reader:
        if row == header:
            if len(audit.header_lines) < repeats_wanted:
                audit.header_lines.append(reader.line_num)
        elif len(row) == len(header):
            for i, finding, texts in wanted:
                if row[i] in texts and len(finding.lines) < EXAMPLES:
                    finding.lines.append((name, reader.line_num, row[i]))
        if len(audit.header_lines) >= repeats_wanted and all(len(f.lines) >= min(EXAMPLES, f.rows) for _, f, _ in wanted):
            return


def audit(names: Iterable[str], open_binary: Callable[[str], BinaryIO], domains: dict[str, Domain] | None = None) -> SpanAudit:
    """Audit the CSV files `names` of one span (opened with `open_binary`) against the contract and `domains`."""
    domains = domains or {}
    columns = {name: ColumnAudit(kind, domains.get(name)) for name, kind in features.active().raw_types.items()}
    tallies = plausibility.tallies(features.active().plausibility)
    files = []
    for name in names:
        try:
            with open_binary(name) as stream:
                header, has_rows = _header(stream)
        except UnicodeDecodeError as exc:
            raise AuditError(f"{name} is not UTF-8 text: {exc}") from exc
        file_audit = FileAudit(name, header)
        files.append(file_audit)
        if header is None or not has_rows:
            continue
        located = {c: (columns[c].invalid.rows, columns[c].out_of_domain.rows) for c in columns}
        with open_binary(name) as stream:
            _count(name, stream, header, columns, file_audit, tallies)
        if file_audit.header_repeats or any(
            (columns[c].invalid.rows, columns[c].out_of_domain.rows) != located[c] for c in columns
        ):
            with open_binary(name) as stream:
                _locate(name, stream, columns, file_audit)
    return SpanAudit(files, columns, tallies)
