"""Labels that arrive after the prediction: reading and writing the labels files.

Format: any number of `*.jsonl` files under the labels folder (default `<home>/labels/`), one
outcome per line, keyed like the request log, with the columns only the contract's label reads
(`label_only`, absent from serving requests); for the taxi:

    {"request_id": "4f1c...", "index": 0, "tips": 3.5}

`index` defaults to 0 (single-instance requests). The label is the contract's rule over these
columns and the logged features (the taxi's: tips > 20 % of the logged fare; monitoring/live.py).
A multi-class label's line carries the label column's value (`{"request_id": ..., "index": 0,
"cultivar": "barbera"}`); a value that is none of the contract's classes is counted apart
(`outside_classes`, said in the monitor report) and skipped. Files are read in name order and a
later line for the same key replaces an earlier one (corrections). Lines that are not valid JSON,
lack a key or a label column, or whose value does not fit the column's type are counted as invalid
and skipped. Joined to the request log by
monitoring/live.py (live metrics) and ct/feedback.py (feedback spans).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from models import features
from models.contract import Label, OutsideClasses

Key = tuple[str, int]
Outcome = dict[str, Any]  # label column -> delivered value


@dataclass
class Labels:
    outcomes: dict[Key, Outcome] = field(default_factory=dict)
    source: dict[Key, str] = field(default_factory=dict)  # key -> name of the file its (last) label came from
    files: int = 0
    invalid_lines: int = 0
    outside_classes: int = 0  # lines of a multi-class label whose value is none of its classes


def _value(item: dict[str, Any], column: str, kind: str) -> Any:
    value = item[column]
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{column} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{column} must be a number, got {value!r}")
    return float(value) if kind == "float" else value


def _in_classes(label: Label, value: Any) -> bool:
    try:
        label.index(value)
    except OutsideClasses:
        return False
    return True


def read(root: Path) -> Labels:
    contract = features.active()
    columns = {name: contract.column(name).type for name in contract.label.label_only}
    labels = Labels()
    folder = Path(root)
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        labels.files += 1
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    key = (str(item["request_id"]), int(item.get("index", 0)))
                    outcome = {name: _value(item, name, kind) for name, kind in columns.items()}
                except (ValueError, KeyError, TypeError, AttributeError):
                    labels.invalid_lines += 1
                    continue
                if contract.label.multiclass and not _in_classes(contract.label, outcome[contract.label.column]):
                    labels.outside_classes += 1
                    continue
                labels.outcomes[key] = outcome
                labels.source[key] = path.name
    return labels


def write(path: Path, outcomes: Iterable[tuple[str, int, Any]]) -> None:
    """Append (request_id, index, outcome) lines to a labels file (what a label feed would do). An
    outcome is {label column: value}, or the value alone when the label reads one such column."""
    label = features.active().label
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        for request_id, index, outcome in outcomes:
            out.write(json.dumps({"request_id": request_id, "index": index, **label.outcome(outcome)}) + "\n")
