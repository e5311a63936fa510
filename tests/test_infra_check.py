"""InfraCheck: a candidate is pushed only if it answers real eval examples through the serving code."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.local import run_summary
from conveyor.local import runner as local_run
from data import spans_io
from metadata import connection, registry, runs
from pipeline import configs
from pipeline.components import infra_check
from tests.conftest import SMALL_SPAN_ROWS

BAD_MODEL_MODULE = Path(__file__).parent / "assets" / "model_requires_tips.py"


def _nodes(config):
    store = connection.open_store(connection.sqlite_config(config.metadata_path))
    return runs.run_executions(store, runs.latest_run_id(store, config.pipeline_name))


@pytest.fixture(scope="module")
def refused_run(shipped_rows, tmp_path_factory):
    """A clean span whose model's serving signature wrongly requires `tips`."""
    base = tmp_path_factory.mktemp("infra")
    config = configs.load(
        home=base / "home", spans_root=base / "spans", train_steps=100, eval_steps=5, span=1,
        model_module=BAD_MODEL_MODULE, user_code="module_file",  # a model file outside the installed package
    )
    spans_io.write_span(config.spans_root, 1, shipped_rows[:SMALL_SPAN_ROWS])
    return config, local_run.run(config)


def test_a_model_that_cannot_serve_is_blessed_by_the_evaluator_but_never_pushed(refused_run):
    config, summary = refused_run
    assert summary.ok, summary.error
    assert summary.blessed  # the Evaluator saw complete examples and was satisfied
    assert summary.infra_failure and "tips" in summary.infra_failure
    assert summary.pushed_path is None
    assert not config.serving_root.exists() or not any(config.serving_root.iterdir())
    assert "infra check: FAILED, not pushed:" in run_summary.format_summary(summary)
    assert registry.list_versions(config) == []
    card = json.loads(Path(summary.card_file).with_name("model_card.json").read_text())["quantitative_analysis"]
    importance = card["feature_importance"]
    assert importance["features"] == [] and "InfraCheck refused the candidate" in importance["not_computed"] and "tips" in importance["not_computed"]
    overall = {m["type"]: m for m in card["performance_metrics"] if m["slice"] == "overall"}
    bounds = overall["binary_accuracy"]["confidence_interval"]  # the Evaluator's figure, bounded from its counts
    assert bounds["lower_bound"] < overall["binary_accuracy"]["value"] > 0.5 and bounds["upper_bound"] > overall["binary_accuracy"]["value"]


def test_the_pushed_model_passed_the_infra_check_on_real_examples(small_run):
    config, summary = small_run
    assert summary.infra_failure is None
    assert summary.infra_checked == config.infra_check_examples
    nodes = _nodes(config)
    [blessing] = nodes["Pusher"].inputs["infra_blessing"]
    assert blessing.custom_properties[infra_check.BLESSED_KEY].int_value == 1
    assert blessing.custom_properties[infra_check.FOLDED_KEY].int_value == 1  # asked through the server's call
    assert "infra check: passed" in run_summary.format_summary(summary)


def test_check_model_directly(small_run, refused_run):
    config, summary = small_run
    nodes = _nodes(config)
    examples = nodes["DataGate"].outputs["validated_examples"][0].uri
    samples = infra_check.sample_examples(examples, "eval", 8)
    assert len(samples) == 8
    good = infra_check.check_model(Path(summary.pushed_path), samples, config.schema_path)
    assert good == infra_check.InfraResult(True, 8, folded=True)
    bad_config, _ = refused_run
    bad_model = _nodes(bad_config)["Trainer"].outputs["model"][0].uri
    bad = infra_check.check_model(Path(bad_model) / "Format-Serving", samples, config.schema_path)
    assert not bad.ok and "request with JSON features failed" in bad.failure and "tips" in bad.failure
    missing = infra_check.check_model(Path(bad_model), samples, config.schema_path)  # not a SavedModel dir
    assert not missing.ok and "does not load" in missing.failure
