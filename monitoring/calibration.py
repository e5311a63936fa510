"""Is a version's probability what it claims? Reliability on its eval split, and the calibrator CBPE uses.

The input is the version's answers on its own labelled eval examples (monitoring/eval_answers.py):
a binary model's probability of the positive class against the label, a multi-class model's top
probability (its predicted class's) against whether that class was right ("top-label" calibration:
the expected accuracy needs nothing else). The checks, every one from these rows alone:
  - enough rows: each class needs `cbpe_min_class_rows` eval rows (pipeline/configs.py), or
    nothing is trusted;
  - reliability: BINS equal-count bins of the score, each bin's mean score against its observed
    rate; ECE (expected calibration error) = the row-weighted mean gap. A perfectly calibrated model
    still shows a gap on a finite sample: each bin's observed rate is a mean of Bernoulli draws, so
    |gap| ~ sqrt(2/pi) * sd and the ECE has a known mean and sd under calibration (`noise`). The
    model counts as calibrated when its ECE is within noise mean + Z_CALIBRATED sds;
  - otherwise an isotonic calibrator (scikit-learn's IsotonicRegression, monotone: it keeps the
    model's ranking) is fitted, and judged on rows it did not see (two folds, each fitted on the
    other, a seeded shuffle), in the bins of the model's own score: CBPE needs the calibration to
    hold in every score region, since shifted traffic weighs the regions differently (a calibrator
    that only averages out, say flat at the base rate, is calibrated overall and wrong in each
    region). It fixes the error when that cross-fitted ECE is within the bound, and the estimate is
    not trusted when it does not.
The calibrator is kept as its breakpoints (applied with linear interpolation, clipped at the ends,
exactly as IsotonicRegression predicts), so applying it needs numpy only.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

FORMAT = 1
BINS = 10
Z_CALIBRATED = 3.0  # an ECE this many sds above its noise mean is miscalibration, not sampling
SUPPORT_BIN_WIDTH = 0.1  # score regions of this width where the eval split had SUPPORT_MIN_ROWS rows
SUPPORT_MIN_ROWS = 10
SEED = 0
NONE, ISOTONIC = "none", "isotonic"


@dataclass(frozen=True)
class Reliability:
    """ECE of scores against 0/1 outcomes, the bins it came from, and what sampling alone would give."""

    ece: float
    noise_mean: float  # the ECE's expected value for a perfectly calibrated model on these scores
    noise_sd: float
    bins: list[dict[str, float]]  # {low, high, rows, mean_score, observed}

    @property
    def bound(self) -> float:
        return self.noise_mean + Z_CALIBRATED * self.noise_sd

    @property
    def calibrated(self) -> bool:
        return self.ece <= self.bound


def reliability(
    scores: Sequence[float], outcomes: Sequence[int], binned_by: Sequence[float] | None = None, bins: int = BINS
) -> Reliability:
    """Equal-count bins of the rows sorted by `binned_by` (default: the scores; ties stay in one bin)."""
    key = np.asarray(scores if binned_by is None else binned_by, dtype=float)
    order = np.argsort(key, kind="stable")
    s, y, key = np.asarray(scores, dtype=float)[order], np.asarray(outcomes, dtype=float)[order], key[order]
    n = len(s)
    cuts = {0, n}
    for k in range(1, bins):
        cut = round(k * n / bins)
        while 0 < cut < n and key[cut] == key[cut - 1]:  # a tie across the cut: the bin before takes it
            cut += 1
        cuts.add(cut)
    found, ece, mean, var = [], 0.0, 0.0, 0.0
    for start, end in itertools.pairwise(sorted(cuts)):
        part_s, part_y = s[start:end], y[start:end]
        rows, weight = len(part_s), len(part_s) / n
        sd = math.sqrt(float(np.sum(part_s * (1 - part_s)))) / rows  # of the observed rate, if calibrated
        ece += weight * abs(float(part_y.mean()) - float(part_s.mean()))
        mean += weight * sd * math.sqrt(2 / math.pi)
        var += (weight * sd) ** 2 * (1 - 2 / math.pi)
        found.append({"low": float(key[start]), "high": float(key[end - 1]), "rows": rows,
                      "mean_score": float(part_s.mean()), "observed": float(part_y.mean())})
    return Reliability(ece, mean, math.sqrt(var), found)


def fit_isotonic(scores: Sequence[float], outcomes: Sequence[int]) -> tuple[list[float], list[float]]:
    """The breakpoints (x, y) of the isotonic fit of outcomes on scores."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, outcomes)
    return [float(x) for x in model.X_thresholds_], [float(y) for y in model.y_thresholds_]


def apply_points(points: tuple[Sequence[float], Sequence[float]] | None, scores: Sequence[float]) -> list[float]:
    if points is None:
        return [float(s) for s in scores]
    x, y = points
    return [float(v) for v in np.interp(np.asarray(scores, dtype=float), x, y)]


def cross_fitted(scores: Sequence[float], outcomes: Sequence[int]) -> list[float]:
    """Each row's calibrated score from an isotonic fit on the other fold (two folds, seeded)."""
    index = list(range(len(scores)))
    random.Random(SEED).shuffle(index)
    folds = [index[::2], index[1::2]]
    out = [0.0] * len(scores)
    for held, fit_on in ((folds[0], folds[1]), (folds[1], folds[0])):
        points = fit_isotonic([scores[i] for i in fit_on], [outcomes[i] for i in fit_on])
        for i, value in zip(held, apply_points(points, [scores[i] for i in held])):
            out[i] = value
    return out


def support(scores: Sequence[float]) -> list[int]:
    """Eval rows per SUPPORT_BIN_WIDTH-wide score region, from 0 to 1."""
    count = round(1 / SUPPORT_BIN_WIDTH)
    found = [0] * count
    for s in scores:
        found[min(int(s / SUPPORT_BIN_WIDTH), count - 1)] += 1
    return found


@dataclass
class Calibration:
    """The calibration of one version on its eval split, and whether CBPE may trust it."""

    version: str
    multiclass: bool  # scores are top-label probabilities, outcomes "the predicted class was right"
    rows: int
    class_rows: dict[str, int]  # eval rows per class (of the label)
    accuracy: float  # the version's accuracy on these rows
    raw: dict[str, Any]  # Reliability of the model's own scores, as JSON
    method: str  # NONE (already calibrated) or ISOTONIC
    cross_fitted: dict[str, Any] | None = None  # Reliability of the isotonic calibrator on unseen rows
    points: tuple[list[float], list[float]] | None = None  # the calibrator's breakpoints
    support: list[int] = field(default_factory=list)  # eval rows per score region (see `support`)
    problems: list[str] = field(default_factory=list)  # why an estimate from it is not trusted
    source: str = ""  # where the eval rows came from
    min_class_rows: int = 0  # the minimum it was checked with
    format: int = FORMAT

    @property
    def trusted(self) -> bool:
        return not self.problems

    @property
    def ece(self) -> float | None:
        """The ECE an estimate carries: the calibrator's on unseen rows, or the model's own (None: not checked)."""
        return (self.cross_fitted or self.raw)["ece"]

    def apply(self, scores: Sequence[float]) -> list[float]:
        return apply_points(self.points, scores)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Calibration":
        points = data.get("points")
        return cls(**{**data, "points": (list(points[0]), list(points[1])) if points else None})

    def describe(self) -> str:
        if self.ece is None:
            return "calibration not checked"
        if self.method == NONE:
            return f"calibrated as is, ECE {self.ece:.3f}"
        return f"isotonic-calibrated, ECE {self.raw['ece']:.3f} -> {self.ece:.3f}"


def calibrate(
    version: str, scores: Sequence[float], outcomes: Sequence[int], labels: Sequence[int],
    class_names: Sequence[str], multiclass: bool, min_class_rows: int, source: str = "",
) -> Calibration:
    """Check and calibrate a version from its eval rows: `scores` and 0/1 `outcomes` as described
    above, `labels` the class index of each row (for the rows per class)."""
    class_rows = {name: sum(1 for label in labels if label == k) for k, name in enumerate(class_names)}
    rows = len(scores)
    accuracy = (sum(outcomes) if multiclass else sum((s > 0.5) == bool(o) for s, o in zip(scores, outcomes))) / rows if rows else 0.0
    few = [f"class {name} has {n}" for name, n in class_rows.items() if n < min_class_rows]
    if few or not rows:
        return Calibration(
            version, multiclass, rows, class_rows, accuracy, {"ece": None}, NONE, source=source, min_class_rows=min_class_rows,
            problems=[f"too few eval rows to check calibration: {', '.join(few) or 'none'} (each class needs {min_class_rows})"],
        )
    raw = reliability(scores, outcomes)
    cal = Calibration(version, multiclass, rows, class_rows, accuracy, asdict(raw), NONE, support=support(scores), source=source,
                      min_class_rows=min_class_rows)
    if raw.calibrated:
        return cal
    cal.method = ISOTONIC
    crossed = reliability(cross_fitted(scores, outcomes), outcomes, binned_by=scores)
    cal.cross_fitted = asdict(crossed)
    cal.points = fit_isotonic(scores, outcomes)
    if not crossed.calibrated:
        cal.problems.append(
            f"isotonic calibration does not fix the error: ECE {raw.ece:.3f} -> {crossed.ece:.3f} on unseen eval rows "
            f"(calibrated means at most {crossed.bound:.3f} on {rows} rows)"
        )
    return cal
