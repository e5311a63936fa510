"""Why the model answers what it answers, asked of the served signature and nothing else.

Both measures treat the model as the server does: raw features in (serialized tf.Examples for
`serving_default`, which carries the Transform graph), probabilities out. `Predict` is that call.

- Per prediction (`attributions`, the server's `:explain`): for each model feature, how far the
  instance's probability is from what it would be, on average, if that feature alone took the
  values training trips have (the others kept): `p(x) - E[p(x with the feature drawn from its
  training distribution)]`. The training baseline of a feature (`training_baseline`) is that
  distribution, summarised: the deciles of a float feature (ten values, equal weights), the most
  frequent values of an integer or text feature with their shares (no value counting as one). An
  attribution reads "this feature, being what it is rather than what trips usually have, raised (or
  lowered) the probability by this much": a cash trip's payment type lowers it by about what a cash
  trip loses against the usual mix of cash and card. The attributions need not add up to anything:
  features interact (a cash trip and its fare). Cost: one model call on N x (1 + the baseline's
  values over all features) examples, about 120 per instance.
- Global (`permutation_importance`, the model card): for each model feature, the drop in AUC on a
  labelled set when that feature's values are shuffled across its examples (a seeded permutation,
  missing values included), which breaks the feature's link to the label and keeps its distribution.
  Cost: one model call per feature on the whole set.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from models import features
from models.instances import FeatureDict, Value
from models.scores import auc

Predict = Callable[[list[bytes]], list[float]]  # serialized tf.Examples -> probabilities, in order
Baseline = dict[str, list[tuple[Value | None, float]]]  # feature -> training values (None: no value) and their weights
TOP_VALUES = 10  # most frequent values kept of an integer or text feature (the rest: their share spread over these)
QUANTILES = 10  # values summarising a float feature


@dataclass(frozen=True)
class Attribution:
    feature: str
    value: Value | None  # the instance's (None: absent)
    expected: float  # the probability with the feature drawn from its training baseline, on average
    attribution: float  # p(x) - expected


@dataclass(frozen=True)
class Importance:
    feature: str
    auc_drop: float  # AUC with the feature's values as they are, minus with them shuffled


def training_baseline(rows: Sequence[FeatureDict], names: Sequence[str] | None = None) -> Baseline:
    """Each feature's training distribution, summarised: a float feature's deciles (the value at
    5 %, 15 %, ..., 95 % of the sorted values present) weighted by the share of rows with a value,
    plus no value at the share without; an integer or text feature's TOP_VALUES most frequent values
    (no value included), weights renormalised to add up to 1. `names`: the model's features unless given."""
    contract = features.active()
    found: Baseline = {}
    for name in contract.model_features if names is None else names:
        values = [row.get(name) for row in rows]
        present = sorted(v for v in values if v is not None)
        absent = (len(values) - len(present)) / len(values) if values else 1.0
        if contract.raw_types[name] == "FLOAT" and present:
            picks = [present[min(len(present) - 1, int((i + 0.5) * len(present) / QUANTILES))] for i in range(QUANTILES)]
            found[name] = [(v, (1 - absent) / QUANTILES) for v in picks] + ([(None, absent)] if absent else [])
        else:
            counts = Counter(values)
            top = sorted(counts, key=lambda v: (-counts[v], v is None, str(v)))[:TOP_VALUES]
            kept = sum(counts[v] for v in top)
            found[name] = [(v, counts[v] / kept) for v in top]
    return found


def _protos(rows: Sequence[FeatureDict]) -> list[Any]:
    from models import examples

    return [examples.to_example(row, row.keys()) for row in rows]


def _replaced(original: Any, name: str, value: Value | None) -> bytes:
    """Example `original` serialized with `value` as feature `name` (None: without it): the example
    `to_example` would give, built by copying one rather than building each anew (8x faster)."""
    from models import examples

    variant = type(original)()
    variant.CopyFrom(original)
    feature_map = variant.features.feature
    if value is None:
        if name in feature_map:
            del feature_map[name]
    else:
        feature_map[name].CopyFrom(examples.to_example({name: value}, (name,)).features.feature[name])
    return variant.SerializeToString()


def attributions(rows: Sequence[FeatureDict], baseline: Baseline, predict: Predict) -> tuple[list[float], list[list[Attribution]]]:
    """The probability of each instance and its attributions, largest magnitude first (one model call)."""
    names = [name for name in features.active().model_features if name in baseline]
    replacements = [(name, value) for name in names for value, _ in baseline[name]]
    batch = []
    for original in _protos(rows):
        batch.append(original.SerializeToString())
        batch.extend(_replaced(original, name, value) for name, value in replacements)
    probabilities = predict(batch)
    width = 1 + sum(len(baseline[name]) for name in names)
    found = []
    for i, row in enumerate(rows):
        p, at = probabilities[i * width], i * width + 1
        items = []
        for name in names:
            weights = [w for _, w in baseline[name]]
            expected = sum(w * q for w, q in zip(weights, probabilities[at : at + len(weights)]))
            items.append(Attribution(name, row.get(name), expected, p - expected))
            at += len(weights)
        found.append(sorted(items, key=lambda a: (-abs(a.attribution), a.feature)))
    return [probabilities[i * width] for i in range(len(rows))], found


def permutation_importance(
    rows: Sequence[FeatureDict], labels: Sequence[int], predict: Predict, seed: int, names: Sequence[str] | None = None
) -> tuple[float | None, list[Importance]]:
    """AUC on `rows` and each feature's AUC drop when its values are shuffled, largest first
    ([] when AUC is undefined: one class). `names`: the model's features unless given."""
    originals = _protos(rows)
    base = auc(predict([o.SerializeToString() for o in originals]), labels)
    if base is None:
        return None, []
    found = []
    for name in features.active().model_features if names is None else names:
        column = [row.get(name) for row in rows]
        random.Random(f"{seed}:{name}").shuffle(column)
        shuffled = [_replaced(original, name, value) for original, value in zip(originals, column)]
        shuffled_auc = auc(predict(shuffled), labels)
        assert shuffled_auc is not None  # the same labels: both classes still there
        found.append(Importance(name, base - shuffled_auc))
    return base, sorted(found, key=lambda i: (-i.auc_drop, i.feature))
