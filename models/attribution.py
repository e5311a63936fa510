"""Why the model answers what it answers, asked of the served signature and nothing else.

Both measures treat the model as the server does: raw features in (serialized tf.Examples for
`serving_default`, which carries the Transform graph), probabilities out. `Predict` is that call.

- Per prediction (`attributions`, the server's `:explain`): for each model feature, how much the
  probability moves when that feature alone takes its training baseline value:
  `p(x) - p(x with the feature set to its baseline)`. The baseline (`training_baseline`) is what a
  typical training trip has: the median of a float feature, the most frequent value of an integer
  or text feature, no value where most trips have none. An attribution reads "this feature, being
  what it is rather than typical, raised (or lowered) the probability by this much". The
  attributions need not add up to p(x) - p(baseline): features interact (a cash trip and its fare).
  Cost: one model call on N x (F + 1) examples for N instances and F features.
- Global (`permutation_importance`, the model card): for each model feature, the drop in AUC on a
  labelled set when that feature's values are shuffled across its examples (a seeded permutation,
  missing values included), which breaks the feature's link to the label and keeps its distribution.
  Cost: one model call per feature on the whole set.
"""
from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from models import features
from models.instances import FeatureDict, Value, to_example
from models.scores import auc

Predict = Callable[[list[bytes]], list[float]]  # serialized tf.Examples -> probabilities, in order
Baseline = dict[str, Value | None]  # feature -> its typical training value (None: no value)
ATTRIBUTED = features.MODEL_FEATURES  # what the model reads; the other serving features move nothing


@dataclass(frozen=True)
class Attribution:
    feature: str
    value: Value | None  # the instance's (None: absent)
    baseline: Value | None
    attribution: float  # p(x) - p(x with the feature at its baseline)


@dataclass(frozen=True)
class Importance:
    feature: str
    auc_drop: float  # AUC with the feature's values as they are, minus with them shuffled


def training_baseline(rows: Sequence[FeatureDict], names: Sequence[str] = ATTRIBUTED) -> Baseline:
    """Each feature's typical value over training rows: the median of a float feature (the middle
    value, low median for an even count: a value that occurs), the most frequent value of an integer
    or text feature (ties: the smallest), None when most rows have no value."""
    found: Baseline = {}
    for name in names:
        values = [row[name] for row in rows if row.get(name) is not None]
        if len(values) * 2 <= len(rows):
            found[name] = None
        elif features.RAW_TYPES[name] == "FLOAT":
            found[name] = statistics.median_low(values)
        else:
            counts = Counter(values)
            found[name] = min(counts, key=lambda v: (-counts[v], v))
    return found


def _with(row: FeatureDict, name: str, value: Value | None) -> FeatureDict:
    changed = {k: v for k, v in row.items() if k != name}
    if value is not None:
        changed[name] = value
    return changed


def attributions(rows: Sequence[FeatureDict], baseline: Baseline, predict: Predict) -> tuple[list[float], list[list[Attribution]]]:
    """The probability of each instance and its attributions, largest magnitude first (one model call)."""
    names = [name for name in ATTRIBUTED if name in baseline]
    batch = []
    for row in rows:
        batch.append(to_example(row))
        batch.extend(to_example(_with(row, name, baseline[name])) for name in names)
    probabilities = predict(batch)
    width = len(names) + 1
    found = []
    for i, row in enumerate(rows):
        p = probabilities[i * width]
        moved = probabilities[i * width + 1 : (i + 1) * width]
        items = [Attribution(name, row.get(name), baseline[name], p - q) for name, q in zip(names, moved)]
        found.append(sorted(items, key=lambda a: (-abs(a.attribution), a.feature)))
    return [probabilities[i * width] for i in range(len(rows))], found


def permutation_importance(
    rows: Sequence[FeatureDict], labels: Sequence[int], predict: Predict, seed: int, names: Sequence[str] = ATTRIBUTED
) -> tuple[float | None, list[Importance]]:
    """AUC on `rows` and each feature's AUC drop when its values are shuffled, largest first
    ([] when AUC is undefined: one class)."""
    base = auc(predict([to_example(row) for row in rows]), labels)
    if base is None:
        return None, []
    found = []
    for name in names:
        column = [row.get(name) for row in rows]
        random.Random(f"{seed}:{name}").shuffle(column)
        shuffled = [to_example(_with(row, name, value)) for row, value in zip(rows, column)]
        found.append(Importance(name, base - (auc(predict(shuffled), labels) or 0.0)))
    return base, sorted(found, key=lambda i: (-i.auc_drop, i.feature))
