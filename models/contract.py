"""A pipeline's feature contract: its TOML file parsed and validated into a frozen `Contract`.

The file (models/taxi.toml is the taxi's; docs/pipeline.md, "The feature contract", has every key)
names the model, the raw columns with their types and domains, the transform of each model
feature, the label, the slices, the drift thresholds, the cross-column plausibility rules (optional:
DataGate checks each span against them, pipeline/validation.py) and the model card's texts. Every error is
one line, a ContractError naming the file, the key and what was expected.

The label is binary, `kind = "column"` (an int column, 0/1 or with its `positive` value, or a
string column with its `positive` value) or `kind = "greater_than_fraction"` (value > fraction x of), or multi-class, `kind =
"classes"` (`column` and its `classes`, 3 or more values in order: the label is a value's index).
The classes are the label column's domain (schema/derive.py writes them into the schema, so
DataGate refuses a span with a value outside them); int classes are therefore consecutive.
"""
from __future__ import annotations

import functools
import math
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

TYPES = {"int": "INT", "float": "FLOAT", "string": "BYTES"}  # contract type -> TF type name (CsvExampleGen's)
# Transform kind -> the parameters it takes (models/preprocessing.py applies them), in the order
# the model's inputs list them.
TRANSFORMS: dict[str, tuple[str, ...]] = {
    "zscore_log1p": (),
    "zscore": (),
    "quantile_buckets": ("buckets",),
    "vocabulary": ("top_k", "oov"),
    "category": ("buckets",),
    "hash": ("buckets",),
}
NUMERIC_TRANSFORMS = ("zscore_log1p", "zscore")
LABEL_KINDS = ("column", "greater_than_fraction", "classes")
BINARY_CLASSES = ("0", "1")  # the class names of a binary label


class OutsideClasses(ValueError):
    """A label value that is not one of the contract's classes (one line naming it)."""


class ContractError(ValueError):
    """A contract file that cannot be used: `<file>: <key>: <what was expected>`."""

    def __init__(self, path: Path | str, key: str, expected: str):
        super().__init__(f"{path}: {key}: {expected}")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "int", "float" or "string"
    optional: bool = False  # a serving request may omit it; the schema's presence is its completeness floor
    min: float | None = None  # domain of a numeric column (either bound may be absent)
    max: float | None = None
    values: tuple[str, ...] = ()  # domain of a string column; a value outside it is an anomaly

    @property
    def tf_type(self) -> str:
        return TYPES[self.type]


@dataclass(frozen=True)
class Feature:
    name: str
    transform: str  # a key of TRANSFORMS
    buckets: int = 0
    top_k: int = 0
    oov: int = 0


@dataclass(frozen=True)
class Label:
    name: str  # the label's key in the transformed features
    kind: str  # a LABEL_KINDS value
    column: str = ""  # kind "column"
    positive: str = ""  # kind "column": the positive value as text (a string column's; an int column's, unless 1 of 0/1)
    value: str = ""  # kind "greater_than_fraction": 1 when value > fraction x of
    of: str = ""
    fraction: float = 0.0
    label_only: tuple[str, ...] = ()  # columns only the label reads: absent at serving, delivered with the outcome
    classes: tuple[str | int, ...] = ()  # kind "classes": the column's values, the label is the index

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.value, self.of) if self.kind == "greater_than_fraction" else (self.column,)

    @property
    def multiclass(self) -> bool:
        return self.kind == "classes"

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes as a classify answer names them, in index order ("0", "1" for a binary label)."""
        return tuple(str(c) for c in self.classes) if self.multiclass else BINARY_CLASSES

    def index(self, value: Any) -> int:
        """The class index of a raw label value (kind "classes"); OutsideClasses if it is none of them."""
        try:
            key = value.strip() if isinstance(self.classes[0], str) else int(value)
            if isinstance(value, bool) or (not isinstance(self.classes[0], str) and key != value):
                raise ValueError
            return self.classes.index(key)
        except (AttributeError, TypeError, ValueError):
            raise OutsideClasses(f"{self.column} {value!r} is not one of the classes {list(self.classes)}") from None

    def outcome(self, delivered: Any) -> dict[str, Any]:
        """A delivered outcome as {column: value}: a mapping as is, a single value as the value of
        the one column only the label reads (the taxi's tips)."""
        if isinstance(delivered, Mapping):
            return dict(delivered)
        if len(self.label_only) != 1:
            raise ValueError(f"an outcome of {', '.join(self.label_only)} is a mapping, got {delivered!r}")
        return {self.label_only[0]: delivered}

    def of_row(self, row: Mapping[str, Any]) -> int:
        """The label of one row of raw values, as preprocessing_fn computes it (float32 comparison)."""
        import numpy as np

        if self.multiclass:
            return self.index(row[self.column])
        if self.kind == "column":
            value = row[self.column]
            return int(str(value).strip() == self.positive if self.positive else int(value) == 1)
        f32 = np.float32
        return int(f32(row[self.value]) > f32(row[self.of]) * f32(self.fraction))


@dataclass(frozen=True)
class Plausibility:
    """A rule every span's rows keep to across two columns, `[plausibility.<name>]` in the file:
    kind "ratio": the median of of / per x scale (rows with both values, per > 0 and, with `where`,
    the string column `where[0]` equal to `where[1]`) lies in [low, high];
    kind "same": the two columns hold the same text in at most `max_share` of the rows with both."""

    name: str  # the rule's key, as the sentence names it ("fare_per_mile" -> "fare per mile")
    kind: str  # "ratio" or "same"
    columns: tuple[str, str]  # ratio: (of, per)
    low: float = 0.0
    high: float = math.inf
    scale: float = 1.0
    where: tuple[str, str] | None = None
    max_share: float = 1.0

    @property
    def named(self) -> tuple[str, str]:
        """The two columns a broken rule blames: the filter's column and the ratio's numerator, or the pair."""
        return (self.where[0], self.columns[0]) if self.where else self.columns


@dataclass(frozen=True)
class Contract:
    path: str
    model_name: str
    columns: tuple[Column, ...]
    features: tuple[Feature, ...]  # grouped by transform, in TRANSFORMS order
    unused: tuple[str, ...]
    label: Label
    slices: tuple[str, ...]
    drift_by_feature: tuple[tuple[str, float], ...]
    drift_string: float | None
    drift_numeric: float | None
    intended_use: str
    limitations: tuple[str, ...]
    plausibility: tuple[Plausibility, ...] = ()

    def __eq__(self, other: object) -> bool:  # the same contract wherever its file lives
        return isinstance(other, Contract) and self._content() == other._content()

    def __hash__(self) -> int:
        return hash(self._content())

    def _content(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__dataclass_fields__ if name != "path")

    @functools.cached_property
    def raw_types(self) -> dict[str, str]:
        """Column -> TF type name ("INT", "FLOAT", "BYTES"), in file order."""
        return {c.name: c.tf_type for c in self.columns}

    @functools.cached_property
    def csv_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @functools.cached_property
    def serving_features(self) -> tuple[str, ...]:
        """What a serving request carries: every column but those only the label reads."""
        return tuple(c for c in self.csv_columns if c not in self.label.label_only)

    @functools.cached_property
    def model_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def with_transform(self, *kinds: str) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.transform in kinds)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def drift_thresholds(self) -> dict[str, float]:
        """Feature -> drift threshold: the named ones, then the type defaults for every other used column."""
        named = dict(self.drift_by_feature)
        for column in self.columns:
            default = self.drift_string if column.type == "string" else self.drift_numeric
            if column.name not in named and column.name not in self.unused and default is not None:
                named[column.name] = default
        return named


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, path: Path, default: Any = ...) -> Any:
    """table[key], checked to be of `kind` (str, int, float, bool, list or dict; an int is a float too)."""
    if key not in table:
        if default is ...:
            raise ContractError(path, f"{where}{key}", "missing")
        return default
    value = table[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, (int, float) if kind is float else kind):
        raise ContractError(path, f"{where}{key}", f"expected {_NAMES[kind]}, got {value!r}")
    return float(value) if kind is float else value


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a table"}


def _unknown(table: Mapping[str, Any], allowed: tuple[str, ...], where: str, path: Path) -> None:
    for key in table:
        if key not in allowed:
            raise ContractError(path, f"{where}{key}", f"unknown key (expected one of {', '.join(allowed)})")


def _names(value: list, key: str, known: set[str], path: Path, what: str = "a column") -> tuple[str, ...]:
    for item in value:
        if not isinstance(item, str) or item not in known:
            raise ContractError(path, key, f"expected {what}, got {item!r}")
    if len(set(value)) != len(value):
        raise ContractError(path, key, "expected each name once")
    return tuple(value)


def _column(name: str, spec: Any, path: Path) -> Column:
    where = f"columns.{name}."
    if not isinstance(spec, dict):
        raise ContractError(path, f"columns.{name}", f"expected a table such as {{type = \"float\"}}, got {spec!r}")
    _unknown(spec, ("type", "optional", "min", "max", "values"), where, path)
    kind = _get(spec, "type", str, where, path)
    if kind not in TYPES:
        raise ContractError(path, f"{where}type", f"expected one of {', '.join(TYPES)}, got {kind!r}")
    if (kind == "string" and ("min" in spec or "max" in spec)) or (kind != "string" and "values" in spec):
        raise ContractError(path, where.rstrip("."), "min/max are for int and float columns, values for string ones")
    bound = int if kind == "int" else float
    values = _get(spec, "values", list, where, path, [])
    if not all(isinstance(v, str) for v in values):
        raise ContractError(path, f"{where}values", "expected a list of strings")
    return Column(name, kind, _get(spec, "optional", bool, where, path, False),
                  _get(spec, "min", bound, where, path, None), _get(spec, "max", bound, where, path, None), tuple(values))


def _feature(name: str, spec: Any, columns: dict[str, Column], path: Path) -> Feature:
    where = f"features.{name}."
    if name not in columns:
        raise ContractError(path, f"features.{name}", "expected a column of [columns]")
    if not isinstance(spec, dict):
        raise ContractError(path, f"features.{name}", f"expected a table such as {{transform = \"zscore\"}}, got {spec!r}")
    kind = _get(spec, "transform", str, where, path)
    if kind not in TRANSFORMS:
        raise ContractError(path, f"{where}transform", f"expected one of {', '.join(TRANSFORMS)}, got {kind!r}")
    _unknown(spec, ("transform",) + TRANSFORMS[kind], where, path)
    wanted = {"zscore_log1p": "float int", "zscore": "float int", "quantile_buckets": "float int", "vocabulary": "string",
              "category": "int", "hash": "int string"}[kind]
    if columns[name].type not in wanted.split():
        raise ContractError(path, f"{where}transform", f"{kind} needs a {' or '.join(wanted.split())} column, {name} is {columns[name].type}")
    params = {key: _get(spec, key, int, where, path) for key in TRANSFORMS[kind]}
    for key, value in params.items():
        if value < (0 if key == "oov" else 1):
            raise ContractError(path, f"{where}{key}", f"expected an integer >= {0 if key == 'oov' else 1}, got {value}")
    return Feature(name, kind, **params)


def _label(spec: Any, columns: dict[str, Column], path: Path) -> Label:
    if not isinstance(spec, dict):
        raise ContractError(path, "label", "expected a table")
    kind = _get(spec, "kind", str, "label.", path)
    if kind not in LABEL_KINDS:
        raise ContractError(path, "label.kind", f"expected one of {', '.join(LABEL_KINDS)}, got {kind!r}")
    name = _get(spec, "name", str, "label.", path)
    if name in columns:
        raise ContractError(path, "label.name", f"expected a name that is not a column, got {name!r}")
    if kind == "column":
        _unknown(spec, ("kind", "name", "column", "positive"), "label.", path)
        column = _get(spec, "column", str, "label.", path)
        if column not in columns:
            raise ContractError(path, "label.column", f"expected a column of [columns], got {column!r}")
        if columns[column].type == "float":
            raise ContractError(path, "label.column", "expected an int column (0/1, or with its positive value) or a string column")
        if columns[column].type == "string":
            positive = _get(spec, "positive", str, "label.", path, "")
            if not positive:
                raise ContractError(path, "label.positive", "expected for a string label column (its positive value)")
        else:
            positive = "" if "positive" not in spec else str(_get(spec, "positive", int, "label.", path))
        return Label(name, kind, column=column, positive=positive, label_only=(column,))
    if kind == "classes":
        return _classes(spec, name, columns, path)
    _unknown(spec, ("kind", "name", "value", "of", "fraction", "label_only"), "label.", path)
    value, of = _get(spec, "value", str, "label.", path), _get(spec, "of", str, "label.", path)
    for key, column in (("value", value), ("of", of)):
        if column not in columns or columns[column].type == "string":
            raise ContractError(path, f"label.{key}", f"expected a numeric column of [columns], got {column!r}")
    label_only = _names(_get(spec, "label_only", list, "label.", path), "label.label_only", {value, of}, path,
                        "a column the label reads")
    return Label(name, kind, value=value, of=of, fraction=_get(spec, "fraction", float, "label.", path), label_only=label_only)


def _classes(spec: dict, name: str, columns: dict[str, Column], path: Path) -> Label:
    _unknown(spec, ("kind", "name", "column", "classes"), "label.", path)
    column = _get(spec, "column", str, "label.", path)
    if column not in columns:
        raise ContractError(path, "label.column", f"expected a column of [columns], got {column!r}")
    kind = columns[column].type
    if kind == "float":
        raise ContractError(path, "label.column", f"expected an int or string column, {column} is float")
    classes = _get(spec, "classes", list, "label.", path)
    wanted = str if kind == "string" else int
    for value in classes:
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ContractError(path, "label.classes", f"expected {_NAMES[wanted]} per class ({column} is {kind}), got {value!r}")
    if len(classes) < 3:
        raise ContractError(path, "label.classes", f"expected 3 or more classes, got {len(classes)} (a binary label is kind \"column\")")
    repeated = next((v for i, v in enumerate(classes) if v in classes[:i]), None)
    if repeated is not None:
        raise ContractError(path, "label.classes", f"expected each class once, got {repeated!r} twice")
    if wanted is int and sorted(classes) != list(range(min(classes), max(classes) + 1)):
        raise ContractError(path, "label.classes", "expected consecutive integers (the schema's int domain is a range)")
    spec_column = columns[column]
    if spec_column.values or spec_column.min is not None or spec_column.max is not None:
        raise ContractError(path, f"columns.{column}", "the label's classes are its domain: no values, min or max here")
    return Label(name, "classes", column=column, label_only=(column,), classes=tuple(classes))


def _threshold(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ContractError(path, key, f"expected a number in (0, 1], got {value!r}")
    return float(value)


def _pair(spec: dict, key: str, where: str, path: Path, columns: dict[str, Column], numeric: bool) -> tuple[str, str]:
    pair = _get(spec, key, list, where, path)
    known = {n for n, c in columns.items() if c.type != "string" or not numeric}
    if len(pair) != 2:
        raise ContractError(path, f"{where}{key}", f"expected two column names, got {pair!r}")
    names = _names(pair, f"{where}{key}", known, path, "a numeric column" if numeric else "a column")
    return names[0], names[1]


def _plausibility(name: str, spec: Any, columns: dict[str, Column], path: Path) -> Plausibility:
    where = f"plausibility.{name}."
    if not isinstance(spec, dict) or ("ratio" in spec) == ("same" in spec):
        raise ContractError(path, f"plausibility.{name}", "expected a table with ratio = [of, per] or same = [a, b]")
    if "same" in spec:
        _unknown(spec, ("same", "max_share"), where, path)
        return Plausibility(name, "same", _pair(spec, "same", where, path, columns, False),
                            max_share=_threshold(_get(spec, "max_share", float, where, path), f"{where}max_share", path))
    _unknown(spec, ("ratio", "median", "scale", "where"), where, path)
    band = _get(spec, "median", list, where, path)
    if len(band) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in band) or band[0] > band[1]:
        raise ContractError(path, f"{where}median", f"expected [low, high], two numbers with low <= high, got {band!r}")
    scale = _get(spec, "scale", float, where, path, 1.0)
    if scale <= 0:
        raise ContractError(path, f"{where}scale", f"expected a number > 0, got {scale!r}")
    condition = _get(spec, "where", dict, where, path, {})
    strings = {n for n, c in columns.items() if c.type == "string"}
    if len(condition) > 1 or any(k not in strings or not isinstance(v, str) for k, v in condition.items()):
        raise ContractError(path, f"{where}where", f"expected {{<string column> = \"<value>\"}}, got {condition!r}")
    return Plausibility(name, "ratio", _pair(spec, "ratio", where, path, columns, True), float(band[0]), float(band[1]),
                        scale, next(iter(condition.items()), None))


def parse(data: Mapping[str, Any], path: Path) -> Contract:
    """The Contract a parsed TOML document describes (ContractError if it describes none)."""
    _unknown(data, ("name", "unused", "slices", "columns", "features", "label", "drift", "plausibility", "card"), "", path)
    model_name = _get(data, "name", str, "", path)
    columns: dict[str, Column] = {name: _column(name, spec, path) for name, spec in _get(data, "columns", dict, "", path).items()}
    if not columns:
        raise ContractError(path, "columns", "expected at least one column")
    specs = _get(data, "features", dict, "", path)
    parsed = [_feature(name, spec, columns, path) for name, spec in specs.items()]
    if not parsed:
        raise ContractError(path, "features", "expected at least one model feature")
    features = tuple(f for kind in TRANSFORMS for f in parsed if f.transform == kind)
    label = _label(_get(data, "label", dict, "", path), columns, path)
    if label.multiclass:  # its classes are the label column's domain (the schema's, so DataGate's)
        column = columns[label.column]
        columns[label.column] = replace(column, values=tuple(map(str, label.classes))) if column.type == "string" else replace(
            column, min=min(label.classes), max=max(label.classes))
    for name in label.label_only:
        if name in specs:
            raise ContractError(path, f"features.{name}", "a column only the label reads cannot be a model feature")
    unused = _names(_get(data, "unused", list, "", path, []), "unused", set(columns), path)
    for name in unused:
        if name in specs or name in label.reads:
            raise ContractError(path, "unused", f"{name} is a model feature or read by the label")
    slices = _names(_get(data, "slices", list, "", path, []), "slices", set(columns) - set(label.label_only), path,
                    "a column serving requests carry")
    drift = _get(data, "drift", dict, "", path, {})
    _unknown(drift, ("string", "numeric", "features"), "drift.", path)
    by_feature = _get(drift, "features", dict, "drift.", path, {})
    for name in by_feature:
        if name not in columns:
            raise ContractError(path, f"drift.features.{name}", "expected a column of [columns]")
    defaults = {k: _threshold(drift[k], f"drift.{k}", path) if k in drift else None for k in ("string", "numeric")}
    card = _get(data, "card", dict, "", path, {})
    _unknown(card, ("intended_use", "limitations"), "card.", path)
    limitations = _get(card, "limitations", list, "card.", path, [])
    if not all(isinstance(text, str) for text in limitations):
        raise ContractError(path, "card.limitations", "expected a list of strings")
    return Contract(
        str(path), model_name, tuple(columns.values()), features, unused, label, slices,
        tuple((name, _threshold(v, f"drift.features.{name}", path)) for name, v in by_feature.items()),
        defaults["string"], defaults["numeric"], _get(card, "intended_use", str, "card.", path, ""), tuple(limitations),
        tuple(_plausibility(n, spec, columns, path) for n, spec in _get(data, "plausibility", dict, "", path, {}).items()),
    )


def load(path: Path | str) -> Contract:
    """The contract in the TOML file at `path`."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ContractError(path, "(file)", f"expected a readable file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(path, _where(path, str(exc)), f"expected TOML without repeated keys ({exc})") from None
    return parse(data, Path(path))


def _where(path: Path | str, message: str) -> str:
    """The key on the line a TOML error points at (e.g. a column declared twice), else "(syntax)"."""
    found = re.search(r"at line (\d+)", message)
    lines = Path(path).read_text().splitlines()
    if found and 0 < int(found.group(1)) <= len(lines) and "=" in lines[int(found.group(1)) - 1]:
        return lines[int(found.group(1)) - 1].split("=")[0].strip()
    return "(syntax)"
