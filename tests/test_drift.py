"""Drift scores separate real span-to-span variation from injected problems; DataGate blocks by policy."""
from __future__ import annotations

import pytest
import tensorflow_data_validation as tfdv

from data import generator, spans_io
from pipeline import drift
from pipeline.configs import PipelineConfig
from tests.tft_helpers import load_schema

CONFIG = PipelineConfig()


@pytest.fixture(scope="module")
def reference():
    return generator.shipped_reference()


@pytest.fixture(scope="module")
def baseline(shipped_spans):
    return tfdv.generate_statistics_from_csv(str(spans_io.span_dir(shipped_spans, 1) / spans_io.SPAN_FILE))


def _scores(tmp_path, reference, baseline, problem):
    path = generator.write_generated_span(tmp_path, 9, reference, 1500, 7, problem)
    current = tfdv.generate_statistics_from_csv(str(path))
    return _compare(current, previous=baseline)


def _compare(current, **against):
    return drift.compare(
        current, load_schema(), CONFIG.drift_thresholds, CONFIG.completeness_drop, median_shift=CONFIG.median_shift, **against
    )


def test_real_next_span_is_within_every_threshold(shipped_spans, baseline):
    current = tfdv.generate_statistics_from_csv(str(spans_io.span_dir(shipped_spans, 2) / spans_io.SPAN_FILE))
    scores = _compare(current, previous=baseline)
    assert {s.feature for s in scores} == set(CONFIG.drift_thresholds)
    assert [s for s in scores if s.exceeded] == []
    # The shipped spans' own difference, the noise any measure must stay quiet on: span 2's trips are
    # about 10 % shorter and cheaper at the median (ln(8.25/7.45) = 0.102, ln(1.0/0.9) = 0.105).
    medians = {s.feature: s.value for s in scores if s.measure == drift.MEDIAN_SHIFT}
    assert medians["fare"] == pytest.approx(0.102, abs=0.002) and medians["trip_miles"] == pytest.approx(0.105, abs=0.002)
    assert max(medians.values()) < CONFIG.median_shift
    assert "tips" not in medians  # a median of 0 has no ratio: the decile JSD covers tips


@pytest.mark.parametrize(
    "problem, flagged",
    [
        (None, set()),
        ("fare_drift", {"fare", "trip_miles"}),  # both x1.8 (tips too, but its median is 0)
        ("miles_scale", {"trip_miles"}),
        ("vanished_payment_type", {"payment_type"}),
        ("label_shift", {"tips"}),
        ("missing_spike", {"company", "dropoff_latitude"}),
    ],
)
def test_injected_problems_flag_exactly_their_features(tmp_path, reference, baseline, problem, flagged):
    exceeded = {s.feature for s in _scores(tmp_path, reference, baseline, problem) if s.exceeded}
    assert exceeded == flagged


def test_report_json_lists_scores_and_exceeded(tmp_path, reference, baseline):
    import json

    report = json.loads(drift.to_json(_scores(tmp_path, reference, baseline, "fare_drift"), "block"))
    assert report["policy"] == "block" and report["exceeded"] == ["fare", "trip_miles"]
    fare = [s for s in report["scores"] if s["feature"] == "fare" and s["measure"] == drift.JENSEN_SHANNON]
    assert fare[0]["exceeded"] and fare[0]["value"] > fare[0]["threshold"]


def test_skew_compares_serving_statistics_without_the_label_source(tmp_path, reference, baseline):
    rows = [{k: v for k, v in r.items() if k != "tips"} for r in generator.generate(reference, 1500, 3, "fare_drift")]
    path = spans_io.write_span(tmp_path, 1, rows, columns=tuple(rows[0]))
    serving = tfdv.generate_statistics_from_csv(str(path))
    scores = _compare(baseline, serving=serving)
    assert {s.comparison for s in scores} == {drift.SKEW}
    assert "tips" not in {s.feature for s in scores}
    assert {s.feature for s in scores if s.exceeded} == {"fare", "trip_miles"}


def test_block_policy_stops_a_drifted_span_at_the_gate(small_run, shipped_rows, tmp_path):
    """Continues small_run's pipeline (span 1 validated) in a copy of its home."""
    import shutil

    from conveyor.local import runner as local_run

    config, _ = small_run
    home = tmp_path / "home"
    shutil.copytree(config.home, home)  # MLMD copy; artifacts stay where small_run wrote them
    spans_root = tmp_path / "spans"
    shutil.copytree(config.spans_root, spans_root)
    generator.write_generated_span(spans_root, 2, shipped_rows, 800, 5, "vanished_payment_type")
    summary = local_run.run(config.replace(home=home, spans_root=spans_root, span=2, drift_policy="block"))
    assert not summary.ok and summary.failed_component == "DataGate"
    assert "drift/skew over threshold (policy block)" in summary.error
    assert "payment_type: drift L_INFINITY" in summary.error
    assert not {"Transform", "Trainer", "Pusher"} & {name for name, _, _ in summary.timings}
