"""Labels that arrive after the prediction, joined to the request log into live metrics.

Format: any number of `*.jsonl` files under the labels folder (default `<home>/labels/`), one
outcome per line, keyed like the request log:

    {"request_id": "4f1c...", "index": 0, "tips": 3.5}

`index` defaults to 0 (single-instance requests). `tips` is the trip's tip in dollars; the label is
the model's (features.is_big_tipper: tips > 20 % of the logged fare). Files are read in name
order and a later line for the same key replaces an earlier one (corrections). Lines that are
not valid JSON or lack a key or a numeric `tips` are counted as invalid and skipped.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from models import features
from models.model import PROBABILITY_KEY
from serving.request_log import Record

Key = tuple[str, int]


@dataclass
class Labels:
    tips: dict[Key, float] = field(default_factory=dict)
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
    return labels


def write(path: Path, outcomes: Iterable[tuple[str, int, float]]) -> None:
    """Append (request_id, index, tips) outcomes to a labels file (what a label feed would do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        for request_id, index, tips in outcomes:
            out.write(json.dumps({"request_id": request_id, "index": index, "tips": tips}) + "\n")


@dataclass(frozen=True)
class LiveMetrics:
    labeled: int
    accuracy: float
    auc: float | None  # None when the labels hold a single class
    positive_rate: float  # share of big tippers among the labeled predictions
    mean_probability: float

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def live_metrics(records: Iterable[Record], labels: Labels) -> dict[str, LiveMetrics]:
    """model version -> metrics over its logged predictions that have a label."""
    by_version: dict[str, list[tuple[float, int]]] = {}
    for item in records:
        tips = labels.tips.get((item["request_id"], item["index"]))
        fare = item["features"].get(features.FARE_KEY)
        if tips is None or fare is None:
            continue
        truth = int(features.is_big_tipper(tips, fare))
        by_version.setdefault(item["model_version"], []).append((item["output"][PROBABILITY_KEY], truth))
    return {version: _metrics(pairs) for version, pairs in sorted(by_version.items())}


def _metrics(pairs: list[tuple[float, int]]) -> LiveMetrics:
    n = len(pairs)
    correct = sum(1 for p, y in pairs if int(p > 0.5) == y)
    return LiveMetrics(
        labeled=n,
        accuracy=correct / n,
        auc=auc([p for p, _ in pairs], [y for _, y in pairs]),
        positive_rate=sum(y for _, y in pairs) / n,
        mean_probability=sum(p for p, _ in pairs) / n,
    )


def auc(scores: list[float], truth: list[int]) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count one half)."""
    positives = sum(truth)
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += sum(mean_rank for k in range(i, j + 1) if truth[order[k]] == 1)
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
