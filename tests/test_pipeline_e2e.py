"""End to end with LocalDagRunner on a small slice of the real data, few training steps.

One sequence of runs shared by the tests below:
  1. span 1 (clean)       -> blessed and pushed; the pushed model answers tf.Examples
  2. no change            -> every component cached, nothing new pushed
  3. span 2 (corrupted)   -> stopped by DataGate before Transform/Trainer, anomalies named, nothing pushed
  4. span 3 (clean)       -> trains on the window [1, 3]: the blocked span is never trained on
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conveyor import analysis
from conveyor.local import runner as local_run
from data import spans_io
from metadata import connection, runs, spans
from models import features, model
from pipeline import configs, versions
from tests.conftest import SMALL_SPAN_ROWS as ROWS_PER_SPAN
from tests.test_model import _example


def _versions(config: configs.PipelineConfig) -> list[str]:
    """Everything in the serving root but the staging area (empty between pushes)."""
    root = config.serving_root
    return sorted(p.name for p in root.iterdir() if p.name != versions.STAGING_DIR) if root.exists() else []


@pytest.fixture(scope="module")
def e2e(shipped_rows, tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    # A window of 3 span numbers: run 4 (span 3) covers spans 1..3, of which 2 was blocked.
    config = configs.load(
        home=base / "home", spans_root=base / "spans", train_steps=100, eval_steps=5, window_spans=3
    )
    spans_io.write_span(config.spans_root, 1, shipped_rows[:ROWS_PER_SPAN])
    results = {}

    results["first"] = local_run.run(config.replace(span=1))
    results["versions_after_first"] = _versions(config)
    results["cached"] = local_run.run(config.replace(span=1))
    results["versions_after_cached"] = _versions(config)

    bad = [dict(r) for r in shipped_rows[ROWS_PER_SPAN : 2 * ROWS_PER_SPAN]]
    for row in bad[:50]:
        row["payment_type"] = "Bitcoin"
        row["trip_start_hour"] = "31"
    spans_io.write_span(config.spans_root, 2, bad)
    spans_io.write_span(config.spans_root, 3, shipped_rows[2 * ROWS_PER_SPAN : 3 * ROWS_PER_SPAN])
    results["pending_after_first"] = spans.spans_to_run(config, latest_only=False)

    results["blocked"] = local_run.run(config.replace(span=2))
    results["versions_after_blocked"] = _versions(config)
    results["next"] = local_run.run(config.replace(span=3))
    return config, results


def test_first_run_is_blessed_and_pushed(e2e):
    config, results = e2e
    summary = results["first"]
    assert summary.ok, summary.error
    assert summary.span == 1 and summary.window_spans == [1]
    assert summary.drift == {"policy": "warn", "exceeded": [], "scores": []}  # nothing to compare with yet
    assert summary.blessed, summary.evaluation.failures
    assert summary.missing_metrics == set()
    assert len(results["versions_after_first"]) == 1
    assert summary.pushed_path == str(config.serving_root / results["versions_after_first"][0])


def test_every_threshold_metric_appears_in_the_evaluation(e2e):
    from pipeline import evaluation

    _, results = e2e
    overall = results["first"].evaluation.metrics["overall"]
    assert evaluation.threshold_metric_names(evaluation.eval_config(configs.PipelineConfig())) <= set(overall)
    assert overall["example_count"] > 0
    assert {"payment_type=Cash", "payment_type=Credit Card"} <= set(results["first"].evaluation.metrics)


def test_progress_reports_each_component_once(e2e):
    _, results = e2e
    names = [name for name, _, _ in results["first"].timings]
    assert names.count("Trainer") == 1 and len(names) == len(set(names)) == 17
    assert dict((n, s) for n, s, _ in results["first"].timings)["Trainer"] == "ran"


def test_pushed_model_answers_through_its_signature(e2e, shipped_rows):
    _, results = e2e
    loaded = tf.saved_model.load(results["first"].pushed_path)
    batch = tf.constant([_example(r, features.active().serving_features) for r in shipped_rows[:20]])
    probability = loaded.signatures["serving_default"](examples=batch)[model.PROBABILITY_KEY].numpy()
    assert probability.shape == (20,) and np.all((0 <= probability) & (probability <= 1))


def test_second_run_without_change_is_fully_cached(e2e):
    _, results = e2e
    summary = results["cached"]
    assert summary.ok, summary.error
    statuses = {name: status for name, status, _ in summary.timings}
    for resolver in ("span_window", "baseline_model", "previous_statistics", "analyzer_cache", "latest_hyperparameters"):
        assert statuses.pop(resolver) == "resolved"
    assert set(statuses.values()) == {"cached"}, statuses
    assert results["versions_after_cached"] == results["versions_after_first"]


def test_pending_spans_are_the_ones_never_ingested(e2e):
    _, results = e2e
    assert results["pending_after_first"] == [2, 3]


def test_corrupted_span_stops_before_training_with_anomalies_named(e2e):
    _, results = e2e
    summary = results["blocked"]
    assert not summary.ok
    assert summary.failed_component == "DataGate"
    assert "span 2 blocked before training" in summary.error
    assert "payment_type: ENUM_TYPE_UNEXPECTED_STRING_VALUES" in summary.error
    assert "trip_start_hour: INT_TYPE_BIG_INT" in summary.error
    ran = {name for name, _, _ in summary.timings}
    assert not ran & {"Transform", "Trainer", "Evaluator", "Pusher"}
    assert summary.pushed_path is None
    assert results["versions_after_blocked"] == results["versions_after_first"]


def test_blocked_span_never_enters_a_later_training_window(e2e):
    _, results = e2e
    summary = results["next"]
    assert summary.ok, summary.error
    assert summary.span == 3
    assert summary.window_spans == [1, 3]
    assert summary.evaluation is not None and summary.evaluation.baseline  # compared with run 1's model
    assert summary.drift["baseline_span"] == 1  # drift baseline skips the blocked span too
    assert {s["feature"] for s in summary.drift["scores"]} == set(configs.PipelineConfig().drift_thresholds)
    store = connection.open_store(connection.sqlite_config(e2e[0].metadata_path))
    read_back = analysis.drift_scores(store, runs.load_run(store, summary.run_id))  # report, notebook
    assert [(d.feature, d.measure, d.value) for d in read_back] == [
        (s["feature"], s["measure"], s["value"]) for s in summary.drift["scores"]
    ]
    assert {d.source for d in read_back} == {"drift vs span 1"}


def test_first_evaluation_has_no_baseline(e2e):
    _, results = e2e
    assert results["first"].evaluation.baseline == {}


def test_a_later_evaluation_and_its_report_compare_every_slice_with_the_baseline(e2e):
    _, results = e2e
    summary = results["next"]
    result = summary.evaluation
    assert set(result.baseline_by_slice) == set(result.metrics)  # TFMA evaluated the baseline on every slice
    page = summary.report_file.read_text(encoding="utf-8")
    assert "Compared with the baseline: the model serving when this one was evaluated." in page
    assert "accuracy baseline" in page and f"{result.baseline['binary_accuracy']:.4f}" in page
    blocked_page = results["blocked"].report_file.read_text(encoding="utf-8")
    assert "FAILED in DataGate" in blocked_page and "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in blocked_page


def test_transform_analyses_only_what_the_previous_span_s_analyzer_cache_does_not_hold(e2e):
    """Run 4 (span 3, window [1, 3]) gets the cache run 1's Transform wrote (the blocked run 3 wrote
    none), so TFT reads span 1 from the cache and analyses span 3 only; Transform writes no
    statistics and no transformed examples (the Trainer applies the graph to the window)."""
    config, results = e2e
    store = connection.open_store(connection.sqlite_config(config.metadata_path))
    first = runs.load_run(store, results["first"].run_id).nodes["Transform"]
    later = runs.load_run(store, results["next"].run_id).nodes["Transform"]
    assert "analyzer_cache" not in first.inputs  # span 1: nothing earlier to reuse
    [written] = first.outputs["updated_analyzer_cache"]
    assert [a.id for a in later.inputs["analyzer_cache"]] == [written.id]
    assert sorted(runs.span_of(a) for a in later.inputs["examples"]) == [1, 3]
    assert not {"pre_transform_stats", "post_transform_stats", "transformed_examples"} & set(later.outputs)
    trainer = runs.load_run(store, results["next"].run_id).nodes["Trainer"]
    assert [a.id for a in trainer.inputs["examples"]] == [a.id for a in later.inputs["examples"]]
