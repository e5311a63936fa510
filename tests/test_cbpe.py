"""CBPE (monitoring/estimate.py) and the calibration checks (monitoring/calibration.py), on simulations.

Labels are drawn from known probabilities with a seed, so the estimate's target is known and the
tolerance comes from the sample size: the realized accuracy of n predictions falls within 3 sd of
its expectation (sd = sqrt(sum a(1-a))/n), an AUC within 3 of its Hanley-McNeil standard errors.
"""
from __future__ import annotations

import math
import random

import pytest

from ct import signals
from ct.decisions import OK, Decision
from models import scores
from monitoring import calibration, estimate
from pipeline import configs
from pipeline.settings import SettingError

N = 4000


def _config(**overrides):
    return configs.PipelineConfig(**{"monitor_min_predictions": 100, **overrides})


def _probabilities(n: int, seed: int, a: float = 0.7, b: float = 0.9) -> list[float]:
    rng = random.Random(seed)
    return [rng.betavariate(a, b) for _ in range(n)]


def _draw(probabilities: list[float], seed: int) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.random() < p) for p in probabilities]


def _records(served: list[float], **extra) -> list[dict]:
    return [{"output": {"probability": s, "predicted_class": int(s > 0.5)}, "features": {}, **extra} for s in served]


def _hanley_mcneil(auc: float, positives: int, negatives: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return math.sqrt((auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (positives * negatives))


def _calibrated(eval_scores: list[float], truth: list[float], seed: int) -> calibration.Calibration:
    labels = _draw(truth, seed)
    return calibration.calibrate("1", eval_scores, labels, labels, ("0", "1"), multiclass=False, min_class_rows=50)


def test_the_estimate_of_a_calibrated_model_is_the_realized_accuracy_and_auc_within_chance():
    p = _probabilities(N, 1)
    cal = _calibrated(p, p, 2)
    assert cal.method == calibration.NONE and cal.trusted
    found = estimate.estimate(_config(), _records(p), cal)
    labels = _draw(p, 3)  # the window's labels, drawn from the same probabilities
    realized = sum((s > 0.5) == bool(y) for s, y in zip(p, labels)) / N
    assert found["state"] == estimate.TRUSTED
    assert abs(found["accuracy"] - realized) <= 3 * found["sd"]
    assert found["sd"] == pytest.approx(estimate.chance_sd(estimate.expected_accuracy(p, [int(s > 0.5) for s in p])))
    real_auc = scores.auc(p, labels)
    assert abs(found["auc"] - real_auc) <= 3 * _hanley_mcneil(real_auc, sum(labels), N - sum(labels))


def test_the_expected_confusion_matrix_puts_p_and_1_minus_p_in_the_predicted_column():
    right = estimate.expected_accuracy([0.9, 0.2, 0.6, 0.4], [1, 0, 1, 0])
    assert right == pytest.approx([0.9, 0.8, 0.6, 0.6])
    # A perfect ranking of certain outcomes has AUC 1; ties are one point of the curve (AUC 0.5).
    assert estimate.expected_auc([0.9, 0.8, 0.1], [1.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert estimate.expected_auc([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)
    assert estimate.expected_auc([0.9, 0.1], [1.0, 1.0]) is None  # no negative expected


def test_an_underconfident_model_is_calibrated_by_isotonic_and_estimated_right():
    truth = _probabilities(N, 4)
    served = [0.5 + (p - 0.5) * 0.4 for p in truth]  # the model says 0.6 where the truth is 0.75
    cal = _calibrated(served, truth, 5)
    raw = calibration.Reliability(**cal.raw)
    assert cal.method == calibration.ISOTONIC and not raw.calibrated and cal.trusted
    assert cal.ece < raw.ece and cal.ece <= calibration.Reliability(**cal.cross_fitted).bound
    window = _probabilities(N, 6, a=2.0, b=2.0)  # covariate shift: more trips near 0.5, where it errs more
    found = estimate.estimate(_config(), _records([0.5 + (p - 0.5) * 0.4 for p in window]), cal)
    labels = _draw(window, 7)
    realized = sum((p > 0.5) == bool(y) for p, y in zip(window, labels)) / N
    uncalibrated = sum(estimate.expected_accuracy([0.5 + (p - 0.5) * 0.4 for p in window], [int(p > 0.5) for p in window])) / N
    # Within chance plus the calibrator's own error (its cross-fitted ECE bounds the accuracy error).
    assert abs(found["accuracy"] - realized) <= 3 * found["sd"] + cal.ece
    assert abs(uncalibrated - realized) > 3 * found["sd"] + cal.ece  # without the calibrator it would be wrong
    assert "isotonic-calibrated, ECE" in estimate.describe(found)


def test_a_perfectly_calibrated_model_passes_the_ece_check_on_nearly_every_sample():
    flagged = 0
    for seed in range(40):
        p = _probabilities(1000, 100 + seed)
        r = calibration.reliability(p, _draw(p, 200 + seed))
        flagged += not r.calibrated
    assert flagged <= 2  # 3 sds above the noise mean: a false alarm is rare


def test_too_few_eval_rows_of_a_class_is_not_trusted_and_says_which():
    p = [0.9] * 300 + [0.1] * 30
    labels = [1] * 300 + [0] * 30
    cal = calibration.calibrate("7", p, labels, labels, ("0", "1"), multiclass=False, min_class_rows=50)
    assert not cal.trusted and cal.ece is None
    assert cal.problems == ["too few eval rows to check calibration: class 0 has 30 (each class needs 50)"]
    found = estimate.estimate(_config(), _records([0.8] * 200), cal)
    assert found["state"] == estimate.UNTRUSTED and not found["low"]
    assert estimate.describe(found).startswith("estimated ") and "NOT TRUSTED (too few eval rows" in estimate.describe(found)


def test_a_calibrator_that_does_not_fix_the_error_is_said_and_not_trusted():
    rng = random.Random(8)
    served = [rng.random() for _ in range(N)]
    labels = [int(0.4 < s < 0.6) for s in served]  # right only in the middle: no monotone map fixes it
    cal = calibration.calibrate("1", served, labels, labels, ("0", "1"), multiclass=False, min_class_rows=50)
    assert cal.method == calibration.ISOTONIC and not cal.trusted
    assert cal.problems[0].startswith("isotonic calibration does not fix the error: ECE ")


def test_a_window_outside_the_calibration_range_or_the_schema_domain_is_not_trusted():
    rng = random.Random(9)
    eval_scores = [0.3 + 0.4 * rng.random() for _ in range(N)]
    cal = _calibrated(eval_scores, eval_scores, 10)
    assert cal.trusted
    found = estimate.estimate(_config(), _records([0.95] * 200), cal)
    assert found["state"] == estimate.UNTRUSTED and "outside the calibration's range" in found["reasons"][0]
    unseen = _records([0.5] * 150, out_of_domain=["payment_type"]) + _records([0.5] * 50)
    found = estimate.estimate(_config(), unseen, cal)
    assert found["reasons"] == ["75% of the predictions carried values outside the schema's domain"]
    few = estimate.estimate(_config(), _records([0.5] * 99), cal)
    assert few["state"] == estimate.NOT_ESTIMATED and few["reasons"] == ["99 predictions (an estimate needs 100)"]
    assert estimate.describe(few) == "estimated n/a (99 predictions (an estimate needs 100))"


def test_a_multiclass_estimate_is_the_mean_calibrated_top_probability():
    rng = random.Random(11)
    top = [1 / 3 + 2 / 3 * rng.random() for _ in range(N)]
    right = _draw(top, 12)
    labels = [rng.randrange(3) for _ in range(N)]
    cal = calibration.calibrate("1", top, right, labels, ("a", "b", "c"), multiclass=True, min_class_rows=50)
    assert cal.trusted and cal.multiclass
    records = [{"output": {"probabilities": [t, (1 - t) / 2, (1 - t) / 2], "predicted_class": 0}, "features": {}} for t in top]
    found = estimate.estimate(_config(), records, cal)
    assert found["auc"] is None and abs(found["accuracy"] - sum(_draw(top, 13)) / N) <= 3 * found["sd"]


def test_an_estimate_is_judged_by_the_live_rules():
    config = _config(live_min_accuracy=0.75, live_max_accuracy_drop=0.05)
    assert estimate.judge(config, 0.80, 0.90)["reasons"] == ["estimated accuracy 0.800 more than 0.05 below its offline 0.900"]
    assert estimate.judge(config, 0.70, None)["reasons"] == ["estimated accuracy 0.700 below the floor 0.75"]
    assert not estimate.judge(config, 0.86, 0.90)["low"]


def test_ct_estimated_performance_takes_off_warn_or_trigger(monkeypatch):
    assert configs.load().ct_estimated_performance == "warn"
    monkeypatch.setenv("CONVEYOR_CT_ESTIMATED_PERFORMANCE", "trigger")
    assert configs.load().ct_estimated_performance == "trigger"
    monkeypatch.setenv("CONVEYOR_CT_ESTIMATED_PERFORMANCE", "always")
    with pytest.raises(SettingError, match=r"^CONVEYOR_CT_ESTIMATED_PERFORMANCE=always: expected one of off, warn, trigger$"):
        configs.load()


def test_an_estimated_drop_fires_once_per_evidence_window():
    config = _config(ct_estimated_performance="trigger")
    low = {"state": estimate.TRUSTED, "low": True, "accuracy": 0.7, "reasons": ["estimated accuracy 0.700 below the floor 0.75"]}
    found = {"version": "7", "since": "2026-12-01T00:00:00+00:00", "estimated": {"version": "7", **low}}
    assert signals.estimated_performance(config, found, [])["low"]
    acted = Decision(time=1.0, fired=True, triggers=["estimated_performance"], reason="", outcome=OK,
                     signals={"estimated_performance": {"version": "7", "since": found["since"]}}, on_estimate=True)
    again = signals.estimated_performance(config, found, [acted])
    assert not again["low"] and again["already_acted_on"]
    later = {**found, "since": "2026-12-02T00:00:00+00:00"}  # a feedback span or a new version started a new window
    assert signals.estimated_performance(config, later, [acted])["low"]
    off = signals.estimated_performance(config.replace(ct_estimated_performance="off"), {k: v for k, v in found.items() if k != "estimated"}, [])
    assert off == {"low": False, "state": "off", "action": "off"}
