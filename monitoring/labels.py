"""Labels that arrive after the prediction: reading and writing the labels files.

Format: any number of `*.jsonl` files under the labels folder (default `<home>/labels/`), one
outcome per line, keyed like the request log:

    {"request_id": "4f1c...", "index": 0, "tips": 3.5}

`index` defaults to 0 (single-instance requests). `tips` is the trip's tip in dollars; the label is
the model's (features.is_big_tipper: tips > 20 % of the logged fare). Files are read in name
order and a later line for the same key replaces an earlier one (corrections). Lines that are
not valid JSON or lack a key or a numeric `tips` are counted as invalid and skipped. Joined to
the request log by monitoring/live.py (live metrics) and ct/feedback.py (feedback spans).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

Key = tuple[str, int]


@dataclass
class Labels:
    tips: dict[Key, float] = field(default_factory=dict)
    source: dict[Key, str] = field(default_factory=dict)  # key -> name of the file its (last) label came from
    files: int = 0
    invalid_lines: int = 0


def read(root: Path) -> Labels:
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
                    tips = item["tips"]
                    if isinstance(tips, bool) or not isinstance(tips, (int, float)) or not math.isfinite(tips):
                        raise ValueError(f"tips must be a number, got {tips!r}")
                except (ValueError, KeyError, TypeError, AttributeError):
                    labels.invalid_lines += 1
                    continue
                labels.tips[key] = float(tips)
                labels.source[key] = path.name
    return labels


def write(path: Path, outcomes: Iterable[tuple[str, int, float]]) -> None:
    """Append (request_id, index, tips) outcomes to a labels file (what a label feed would do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        for request_id, index, tips in outcomes:
            out.write(json.dumps({"request_id": request_id, "index": index, "tips": tips}) + "\n")
