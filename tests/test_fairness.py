"""The fairness gate (pipeline/fairness.py) on the figures TFMA reports per slice: a slice whose error
rate moves further from the overall rate than under the baseline, beyond the bound, refuses the
candidate, named with both rates; what the gate cannot judge is shown, not gated. On real models
and TFMA: tests/test_blessing.py."""
from __future__ import annotations

from pipeline import fairness
from pipeline.configs import PipelineConfig
from pipeline.evaluation import Gate, TfmaResult

BOUNDS = {"fpr": 0.05, "fnr": 0.05}


def _slice(examples: int, positive: int, fpr: float, fnr: float, selection: float) -> dict[str, float]:
    tp = round(positive * (1 - fnr)) if positive else 0
    return {"example_count": examples, "true_positives": tp, "false_negatives": positive - tp, "fpr": fpr, "fnr": fnr,
            "predicted_positive_rate": selection}


BASELINE = {
    "overall": _slice(3000, 700, 0.10, 0.12, 0.25),
    "trip_start_hour=18": _slice(600, 150, 0.09, 0.14, 0.24),
    "trip_start_hour=3": _slice(60, 10, 0.05, 0.30, 0.10),
    "payment_type=Cash": {**_slice(1900, 0, 0.0, float("nan"), 0.0)},
}


def test_a_slice_whose_false_negative_rate_gap_widens_beyond_the_bound_is_refused_naming_it_and_both_rates():
    candidate = {**BASELINE, "overall": _slice(3000, 700, 0.10, 0.14, 0.24), "trip_start_hour=18": _slice(600, 150, 0.09, 0.33, 0.20)}
    rows = fairness.table(candidate, BASELINE, BOUNDS, min_examples=100)
    [refusal] = fairness.refusals(rows)
    assert refusal == (
        "trip_start_hour=18 (150 positive examples): false negative rate 0.3300 against 0.1400 overall, a gap of +0.1900 "
        "that widened by 0.1700 from the baseline's +0.0200 (at most 0.05 allowed)"
    )
    # The same move within the bound passes.
    within = {**candidate, "trip_start_hour=18": _slice(600, 150, 0.09, 0.20, 0.22)}
    assert fairness.refusals(fairness.table(within, BASELINE, BOUNDS, min_examples=100)) == []


def test_what_the_gate_cannot_judge_is_shown_not_gated():
    candidate = {**BASELINE, "trip_start_hour=3": _slice(60, 10, 0.05, 0.90, 0.02)}  # a big move on 10 positives
    rows = {(r.slice, r.metric): r for r in fairness.table(candidate, BASELINE, BOUNDS, min_examples=100)}
    assert rows["trip_start_hour=3", "fnr"].not_gated == "10 positive examples < 100" and not rows["trip_start_hour=3", "fnr"].flagged
    cash = rows["payment_type=Cash", "fnr"]
    assert cash.undefined == "one class" and cash.rate is None and cash.not_gated == "undefined (one class)"
    assert rows["payment_type=Cash", "fpr"].not_gated is None  # 1,900 negatives: judged
    assert rows["trip_start_hour=18", "predicted_positive_rate"].bound is None  # shown, never gated by default
    first = fairness.table(candidate, {}, BOUNDS, min_examples=100)  # nothing was serving: nothing widens
    assert {r.not_gated for r in first if r.bound is not None} == {"no baseline"} and fairness.refusals(first) == []


def test_the_blessing_refuses_with_the_gate_s_sentence_and_keeps_accuracy_s_rule():
    candidate = {**BASELINE, "trip_start_hour=18": _slice(600, 150, 0.30, 0.14, 0.40)}  # false positives at 6 pm
    for values in candidate.values():
        values["binary_accuracy"] = 0.9
    gate = Gate.from_config(PipelineConfig())
    verdict = fairness.judge(TfmaResult(candidate, BASELINE, [], []), gate)
    assert not verdict.blessed
    assert verdict.refusals == [
        next(r.sentence() for r in fairness.table(candidate, BASELINE, dict(gate.fairness), gate.fairness_min_examples) if r.flagged)
    ]
    assert verdict.refusals[0].startswith("trip_start_hour=18 (450 negative examples): false positive rate 0.3000 against 0.1000 overall")
