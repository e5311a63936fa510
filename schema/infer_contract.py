"""A feature contract (models/contract.py) proposed from a CSV file, for `conveyor init`.

It lives beside schema/derive.py, in the ground layer that reads what data looks like: it reads
rows (data/) and writes a contract (models/), and nothing above the ground needs to exist for it.

Each column is typed as CsvExampleGen types it (tfx_bsl's csv decoder: every value an int64 -> int,
else every value a number -> float, else string; empty cells do not count) and marked optional
when any cell is empty (CsvExampleGen keeps an empty cell as a present feature with no value, which
preprocessing fills with a default). Then, by the first rule that applies:
  - constant (one value, or none) or an id (int or string, a different value in every row): unused;
  - string: vocabulary;
  - int, non-negative, every value of CODE_DIGITS+ digits and all of one length: hash (a code);
  - int, non-negative, at most CATEGORY_MAX_VALUES values below CATEGORY_MAX: category, max+1 buckets;
  - int or float: zscore_log1p when non-negative and skewed (skewness > SKEWED), else zscore.
Slices: up to MAX_SLICES string or category features with 2 to MAX_SLICE_VALUES values. Drift:
the type defaults DRIFT. A two-valued label is `kind = "column"`: a string column with its positive
value (--positive; else "1", "true" or "yes" when a value, else the less frequent), or an int 0/1
column; a label of 3 to MAX_CLASSES values is `kind = "classes"` (strings in sorted order, or
consecutive ints in numeric order: the classes are the column's domain).
Every refusal is an InferenceError naming the input (`from_csv`, `label`, `positive`, `spans`).
"""
from __future__ import annotations

import csv
import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CODE_DIGITS = 5
CATEGORY_MAX = 100
CATEGORY_MAX_VALUES = 32
SKEWED = 1.0
MAX_SLICES = 2
MAX_SLICE_VALUES = 20
MIN_SPAN_ROWS = 100
MAX_CLASSES = 50
DRIFT = {"string": 0.15, "numeric": 0.05}  # L-infinity for strings, Jensen-Shannon for numbers (pipeline/drift.py)
VOCABULARY = {"top_k": 1000, "oov": 10}
POSITIVE_NAMES = ("1", "true", "yes")
_INT64 = (-(2**63), 2**63 - 1)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InferenceError(ValueError):
    """Input a contract cannot be inferred from: `field` is the input (from_csv, label, positive, spans)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Table:
    path: Path
    header: tuple[str, ...]  # the column names, each a feature name (letters, digits, '_')
    rows: list[dict[str, str]]  # keyed by those names
    written: dict[str, str] = field(default_factory=dict)  # name -> the header as the file writes it, where they differ

    def column(self, asked: str) -> str:
        """The column `asked` names, as the file writes it or by its name; an InferenceError if none."""
        for name in self.header:
            if asked in (name, self.written.get(name)):
                return name
        raise InferenceError("label", f"not a column of {self.path} (its columns: {', '.join(self.written.get(n, n) for n in self.header)})")


@dataclass(frozen=True)
class Profile:
    """What the data says about one column."""

    name: str
    type: str  # "int", "float", "string"
    empty: int  # rows whose cell is empty
    counts: Counter  # value text -> rows
    numbers: tuple[float, ...]  # the values of a numeric column

    @property
    def optional(self) -> bool:
        return self.empty > 0

    @property
    def unused_because(self) -> str:
        """Why the model should not read this column ("" if it should)."""
        if len(self.counts) <= 1:
            return f"constant: {next(iter(self.counts))!r} in every row" if self.counts else "empty in every row"
        if self.type != "float" and not self.optional and all(n == 1 for n in self.counts.values()):
            return "an id: a different value in every row"
        return ""


def read_csv(path: Path) -> Table:
    """The rows of a CSV file with a header of distinct column names."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's byte order mark is no part of a name
            reader = csv.reader(handle)
            header = next(reader, None)
            lines = list(reader)
    except OSError as exc:
        raise InferenceError("from_csv", f"cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InferenceError("from_csv", f"expected a UTF-8 CSV file ({exc})") from None
    if not header or not any(header):
        raise InferenceError("from_csv", "expected a CSV file whose first line names its columns")
    if len(set(header)) != len(header):
        raise InferenceError("from_csv", f"column {Counter(header).most_common(1)[0][0]!r} is named twice in the header")
    for number, line in enumerate(lines, start=2):
        if len(line) != len(header):
            raise InferenceError("from_csv", f"line {number} has {len(line)} cells, the header {len(header)}")
    names = feature_names(header)
    written = {name: text for name, text in zip(names, header) if name != text}
    return Table(Path(path), names, [dict(zip(names, line)) for line in lines], written)


def feature_names(header: list[str]) -> tuple[str, ...]:
    """A feature name for each header cell: itself when it is one (letters, digits, '_', not first a
    digit), else lower case with every other run of characters an '_' ('Monthly Fee ($)' ->
    'monthly_fee'), 'c_' before a leading digit, '_2', '_3'... after a name already taken."""
    found: list[str] = []
    for text in header:
        name = text if _NAME.fullmatch(text) else re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "column"
        if name[0].isdigit():
            name = f"c_{name}"
        base, number = name, 2
        while name in found or (name in header and name != text):
            name, number = f"{base}_{number}", number + 1
        found.append(name)
    return tuple(found)


def cell_type(text: str) -> str:
    """CsvExampleGen's type of one non-empty cell (tfx_bsl csv_decoder._InferValueType)."""
    try:
        return "int" if _INT64[0] <= int(text) <= _INT64[1] else "string"
    except ValueError:
        try:
            float(text)
        except ValueError:
            return "string"
        return "float"


def profile(table: Table, name: str) -> Profile:
    cells = [row[name] for row in table.rows]
    counts = Counter(c for c in cells if c != "")
    order = ("int", "float", "string")
    kind = max((cell_type(c) for c in counts), key=order.index, default="string")
    numbers = tuple(float(c) for c in cells if c != "") if kind != "string" else ()
    return Profile(name, kind, cells.count(""), counts, numbers)


def transform(column: Profile) -> tuple[str, dict[str, int], str]:
    """The column's transform, its parameters, and why (a comment for the owner)."""
    if column.type == "string":
        return "vocabulary", VOCABULARY, f"{len(column.counts)} values"
    low, high = min(column.numbers), max(column.numbers)
    if column.type == "int" and low >= 0:
        digits = {len(text.lstrip("+")) for text in column.counts}
        if len(digits) == 1 and min(digits) >= CODE_DIGITS:
            return "hash", {"buckets": _buckets(len(column.counts))}, f"every value has {min(digits)} digits: a code"
        if len(column.counts) <= CATEGORY_MAX_VALUES and high < CATEGORY_MAX:
            return "category", {"buckets": int(high) + 1}, f"{len(column.counts)} values from {low:g} to {high:g}"
    skew = _skewness(column.numbers)
    if low >= 0 and skew > SKEWED:
        return "zscore_log1p", {}, f"{low:g} to {high:g}, skewed ({skew:.1f})"
    return "zscore", {}, f"{low:g} to {high:g}"


def _buckets(values: int) -> int:
    """A power of two from 16 to 1024, at least the number of values."""
    return min(1024, max(16, 1 << (values - 1).bit_length()))


def _skewness(numbers: tuple[float, ...]) -> float:
    mean, spread = statistics.fmean(numbers), statistics.pstdev(numbers)
    return 0.0 if spread == 0 else statistics.fmean(((x - mean) / spread) ** 3 for x in numbers)


def label_classes(column: Profile, positive: str | None) -> list[str | int] | None:
    """A multi-class label's classes in index order (None: the label has two values), or an InferenceError."""
    values = sorted(column.counts)
    if column.optional:
        raise InferenceError("label", f"empty in {column.empty} rows: every row needs its label")
    if len(values) < 3:
        return None
    if column.type == "float":
        raise InferenceError("label", f"a float column of {len(values)} values: expected the classes of a string or int column")
    if len(values) > MAX_CLASSES:
        raise InferenceError("label", f"{len(values)} values: expected 2 to {MAX_CLASSES} classes")
    if positive is not None:
        raise InferenceError("positive", f"{column.name} has {len(values)} values (a multi-class label): --positive names a two-valued label's")
    if column.type == "string":
        return list(values)
    numbers = sorted(int(v) for v in values)
    if numbers != list(range(numbers[0], numbers[-1] + 1)):
        raise InferenceError("label", f"int classes {', '.join(map(str, numbers))}: expected consecutive integers (or a string column)")
    return list(numbers)


def label_positive(column: Profile, positive: str | None) -> str:
    """A two-valued label's positive value ("" for an int 0/1 column, whose positive is 1), or an InferenceError."""
    values = sorted(column.counts)
    if len(values) < 2:
        raise InferenceError("label", f"one value ({', '.join(values) or 'none'}): a label needs two")
    if column.type == "float":
        raise InferenceError("label", f"a float column ({', '.join(values)}): expected two values of a string or 0/1 column")
    if positive is not None and positive not in values:
        raise InferenceError("positive", f"not a value of {column.name} (its values: {', '.join(values)})")
    if column.type == "int":
        if set(values) == {"0", "1"}:
            if positive not in (None, "1"):
                raise InferenceError("positive", f"a 0/1 label's positive value is 1, got {positive!r}")
            return ""
        return str(int(positive if positive is not None else min(values, key=lambda v: (column.counts[v], int(v)))))
    if positive is not None:
        return positive
    named = [v for v in values if v.strip().lower() in POSITIVE_NAMES]
    return named[0] if named else min(values, key=lambda v: (column.counts[v], v))


def split(rows: list[dict[str, str]], spans: int) -> list[list[dict[str, str]]]:
    """`rows` in order, in `spans` parts of (nearly) equal size, each at least MIN_SPAN_ROWS rows."""
    if len(rows) // spans < MIN_SPAN_ROWS:
        fits = len(rows) // MIN_SPAN_ROWS
        hint = f"try --spans {fits}" if fits else f"the file needs at least {MIN_SPAN_ROWS} rows"
        raise InferenceError("spans", f"{len(rows)} rows make spans of {len(rows) // spans}, fewer than {MIN_SPAN_ROWS} ({hint})")
    size, extra = divmod(len(rows), spans)
    bounds = [k * size + min(k, extra) for k in range(spans + 1)]
    return [rows[bounds[k] : bounds[k + 1]] for k in range(spans)]


def infer(table: Table, label: str, positive: str | None, name: str) -> str:
    """The contract's TOML text, with a comment on every choice the owner may want to revisit."""
    label = table.column(label)
    columns = {n: profile(table, n) for n in table.header}
    classes = label_classes(columns[label], positive)
    positive_value = "" if classes else label_positive(columns[label], positive)
    unused = {n: c.unused_because for n, c in columns.items() if n != label and c.unused_because}
    chosen = {n: transform(c) for n, c in columns.items() if n != label and n not in unused}
    if not chosen:
        raise InferenceError("from_csv", f"no column besides {label} can be a model feature (all constant or ids)")
    slices = [n for n, (kind, _, _) in chosen.items()
              if kind in ("vocabulary", "category") and 2 <= len(columns[n].counts) <= MAX_SLICE_VALUES][:MAX_SLICES]
    label_name = f"{label}_class" if classes else (
        f"{label}_is_{re.sub(r'[^A-Za-z0-9]+', '_', positive_value or '1').strip('_').lower() or 'positive'}")
    while label_name in columns:
        label_name += "_label"
    lines = [
        f"# The feature contract of {name}, proposed by `conveyor init` from {table.path.name} ({len(table.rows):,} rows).",
        "# Review every line: docs/your-data.md says what each key decides; docs/pipeline.md, \"The feature contract\", has them all.",
        "",
        f"name = {_text(name)}  # the served model's name: /v1/models/{name}:predict",
        "# Columns the model does not read, and why:",
        *[f"#   {n}: {why}" for n, why in unused.items()],
        f"unused = [{', '.join(_text(n) for n in unused)}]",
        "# Features the Evaluator slices by (besides \"overall\"): string or category features with few values.",
        f"slices = [{', '.join(_text(n) for n in slices)}]",
        "",
        "# Raw CSV columns in file order, typed as CsvExampleGen reads them; optional: some cells are empty",
        "# (a serving request may omit it). Add min/max (numbers) or values (strings) to state the valid domain.",
        "[columns]",
        *[_column_line(c, table.written.get(c.name)) for c in columns.values()],
        "",
        "# The model's features and their transforms (models/preprocessing.py), with what the data showed.",
        "[features]",
        *[f"{n} = {{{', '.join([f'transform = {_text(kind)}'] + [f'{k} = {v}' for k, v in params.items()])}}}  # {why}"
          for n, (kind, params, why) in chosen.items()],
        "",
        (f"# The label: the index of {label}'s value among the classes." if classes else
         f"# The label: 1 when {label} is {_text(positive_value) if positive_value else '1'}.") + f" Serving requests do not carry {label};",
        f"# the label feed delivers it: <home>/labels/*.jsonl lines {{\"request_id\", \"index\", \"{label}\"}}.",
        "[label]",
        f"name = {_text(label_name)}",
        'kind = "classes"' if classes else 'kind = "column"',
        f"column = {_text(label)}",
        *([f"classes = [{', '.join(_text(c) if isinstance(c, str) else str(c) for c in classes)}]"] if classes else []),
        *([f"positive = {positive_value if columns[label].type == 'int' else _text(positive_value)}"] if positive_value else []),
        "",
        "# Drift of each span against the previous one and skew of served traffic, by type: L-infinity for",
        "# strings, Jensen-Shannon divergence for numbers. Name a column under [drift.features] to set its own.",
        "[drift]",
        *[f"{kind} = {value}" for kind, value in DRIFT.items()],
        "",
        "# The model card's texts: the model's owners write them.",
        "[card]",
        f"intended_use = {_text(f'TODO (the owners of {name}): what the model predicts, for whom, and what it must not be used for.')}",
        "limitations = [",
        f"    {_text(f'TODO: trained on {table.path.name} only; say where its data may not represent the cases it will serve.')},",
        "]",
    ]
    return "\n".join(lines) + "\n"


def _column_line(column: Profile, written: str | None) -> str:
    spec = [f"type = {_text(column.type)}"] + (["optional = true"] if column.optional else [])
    if column.numbers:
        seen = f"{min(column.numbers):g} to {max(column.numbers):g}"
    else:
        shown = sorted(column.counts)[:5]
        plural = "" if len(column.counts) == 1 else "s"
        seen = f"{len(column.counts)} value{plural}: {', '.join(shown)}{', ...' if len(column.counts) > 5 else ''}"
    empty = f"; empty in {column.empty} rows" if column.empty else ""
    header = f"; the file's header: {written!r}" if written else ""
    return f"{column.name} = {{{', '.join(spec)}}}  # {seen}{empty}{header}"


def _text(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)
