"""Performance of served predictions before their labels arrive: CBPE (confidence-based performance
estimation, as NannyML describes it), with the version's calibration (monitoring/calibration.py).

With calibrated probabilities p_i (of the positive class), prediction i lands in its predicted
class's column of the confusion matrix as p_i positive and 1 - p_i negative, so the window's
expected confusion matrix is the sum of those, and:
  - expected accuracy = mean over predictions of p_i (predicted positive) or 1 - p_i (negative); a
    multi-class model's: the mean calibrated probability of its predicted class;
  - estimated AUC (binary only, models/label_metrics.py): the ROC curve of the model's ranking with
    each prediction counted p_i as a positive and 1 - p_i as a negative, trapezoids over its scores;
  - `sd`: how far the realized accuracy of this many predictions falls from the expectation by
    chance alone, sqrt(sum a_i (1 - a_i)) / n with a_i each prediction's chance to be right.
The verdict uses the live rules (monitoring/live.py): below `live_min_accuracy`, or more than
`live_max_accuracy_drop` below the version's offline accuracy, is low.

CBPE assumes the relation between features and label is the one the model was calibrated on: it
follows covariate shift (traffic moving to where the model is less sure), never concept shift (the
same trips tipping differently): only labels show that. An estimate is not trusted when the
calibration is not (too few eval rows, a calibrator that does not fix the error), when more than
MAX_UNSUPPORTED of the window's scores fall where the eval split had almost no rows (the
calibration's range), or when more than MAX_UNSUPPORTED of its predictions carried values outside
the schema's domain (features the model never saw). An untrusted estimate is reported as such,
never judged.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from models.features import CLASS_KEY, PROBABILITIES_KEY, PROBABILITY_KEY
from monitoring.calibration import SUPPORT_BIN_WIDTH, SUPPORT_MIN_ROWS, Calibration
from monitoring.live import low_accuracy
from pipeline.configs import PipelineConfig
from serving.request_log import Record

MAX_UNSUPPORTED = 0.1
TRUSTED, UNTRUSTED, NOT_ESTIMATED = "trusted", "untrusted", "not_estimated"
ASSUMPTION = "CBPE sees covariate shift, not concept shift (the same features meaning another label): only labels show that"


def expected_accuracy(probabilities: Sequence[float], predicted: Sequence[int]) -> list[float]:
    """Each binary prediction's chance to be right: p if it predicted positive, else 1 - p."""
    return [p if c == 1 else 1 - p for p, c in zip(probabilities, predicted)]


def expected_auc(scores: Sequence[float], probabilities: Sequence[float]) -> float | None:
    """The ROC AUC expected of `scores` (the model's ranking) when each row is positive with its
    calibrated probability (None when the expected positives or negatives are 0)."""
    positives = sum(probabilities)
    negatives = len(probabilities) - positives
    if positives <= 0 or negatives <= 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    area = tp = fp = 0.0
    i = 0
    while i < len(order):  # one step per distinct score: ties are one point of the curve
        j, group_tp, group_fp = i, 0.0, 0.0
        while j < len(order) and scores[order[j]] == scores[order[i]]:
            group_tp += probabilities[order[j]]
            group_fp += 1 - probabilities[order[j]]
            j += 1
        area += group_fp / negatives * (2 * tp + group_tp) / (2 * positives)
        tp, fp, i = tp + group_tp, fp + group_fp, j
    return area


def chance_sd(right: Sequence[float]) -> float:
    return math.sqrt(sum(a * (1 - a) for a in right)) / len(right)


def _scores(records: Sequence[Record], multiclass: bool) -> list[float]:
    if multiclass:
        return [max(r["output"][PROBABILITIES_KEY]) for r in records]
    return [float(r["output"][PROBABILITY_KEY]) for r in records]


def _unsupported(calibration: Calibration, scores: Sequence[float]) -> float:
    """The share of `scores` in score regions where the eval split had fewer than SUPPORT_MIN_ROWS."""
    thin = {k for k, n in enumerate(calibration.support) if n < SUPPORT_MIN_ROWS}
    last = len(calibration.support) - 1
    return sum(min(int(s / SUPPORT_BIN_WIDTH), last) in thin for s in scores) / len(scores)


def estimate(
    config: PipelineConfig, records: Sequence[Record], calibration: Calibration | None, why_not: str | None = None,
    offline_accuracy: float | None = None,
) -> dict[str, Any]:
    """The CBPE estimate of one version's `records` (its predictions), as JSON: state TRUSTED,
    UNTRUSTED (reasons; the figures shown only as untrusted) or NOT_ESTIMATED (reason)."""
    base: dict[str, Any] = {"predictions": len(records), "accuracy": None, "auc": None, "sd": None, "reasons": [],
                            "offline_accuracy": offline_accuracy, "low": False, "assumption": ASSUMPTION}
    if len(records) < config.monitor_min_predictions:
        return {**base, "state": NOT_ESTIMATED,
                "reasons": [f"{len(records)} predictions (an estimate needs {config.monitor_min_predictions})"]}
    if calibration is None:
        return {**base, "state": NOT_ESTIMATED, "reasons": [why_not or "no calibration"]}
    multiclass = calibration.multiclass
    scores = _scores(records, multiclass)
    calibrated = calibration.apply(scores)
    if multiclass:
        right, auc = calibrated, None
    else:
        right = expected_accuracy(calibrated, [int(r["output"][CLASS_KEY]) for r in records])
        auc = expected_auc(scores, calibrated)
    found = {
        **base, "accuracy": sum(right) / len(right), "auc": auc, "sd": chance_sd(right),
        "calibration": calibration.describe(), "ece": calibration.ece, "eval_rows": calibration.rows,
    }
    reasons = list(calibration.problems)
    unsupported = _unsupported(calibration, scores) if calibration.support else 0.0
    if unsupported > MAX_UNSUPPORTED:
        reasons.append(f"{unsupported:.0%} of the window's scores fall where the eval split had fewer than "
                       f"{SUPPORT_MIN_ROWS} rows: outside the calibration's range")
    unseen = sum(bool(r.get("out_of_domain")) for r in records) / len(records)
    if unseen > MAX_UNSUPPORTED:
        reasons.append(f"{unseen:.0%} of the predictions carried values outside the schema's domain")
    if reasons:
        return {**found, "state": UNTRUSTED, "reasons": reasons}
    return {**found, "state": TRUSTED, **judge(config, found["accuracy"], offline_accuracy)}


def judge(config: PipelineConfig, accuracy: float, offline_accuracy: float | None) -> dict[str, Any]:
    """The live rules on an estimated accuracy: {low, reasons}."""
    reasons = low_accuracy(config, accuracy, offline_accuracy, "estimated")
    return {"low": bool(reasons), "reasons": reasons}


def describe(found: dict[str, Any]) -> str:
    """The estimate in one phrase: "estimated 0.871 +- 0.015 (calibrated as is, ECE 0.012)", or why not."""
    if found["state"] == NOT_ESTIMATED:
        return f"estimated n/a ({found['reasons'][0]})"
    figure = f"estimated {found['accuracy']:.3f} +- {found['sd']:.3f}"
    if found["state"] == UNTRUSTED:
        return f"{figure} NOT TRUSTED ({'; '.join(found['reasons'])})"
    return f"{figure} ({found['calibration']})"
