"""A multi-class label's rules without a model: its Evaluator config and verdict notes, the labels
feed (a value outside the classes skipped and counted) and live accuracy on the predicted class."""
from __future__ import annotations

import json

import pytest

from models import features
from monitoring import labels, live
from pipeline import evaluation
from pipeline.configs import PipelineConfig
from tests import wine


@pytest.fixture()
def config(tmp_path, monkeypatch):
    path = tmp_path / "wine.toml"
    path.write_text(wine.CONTRACT)
    monkeypatch.setenv(features.PATH_VARIABLE, str(path))
    return PipelineConfig(contract_path=path, home=tmp_path / "home")


def test_the_evaluator_gates_accuracy_and_says_what_is_binary_only(config):
    eval_config = evaluation.eval_config(config)
    (spec,) = eval_config.model_specs
    assert (spec.prediction_key, spec.label_key) == ("probabilities", "cultivar_id")
    classes = [m.class_name for s in eval_config.metrics_specs for m in s.metrics]
    assert sorted(classes) == ["ExampleCount", "SparseCategoricalAccuracy"]
    assert evaluation.threshold_metric_names(eval_config) == {"sparse_categorical_accuracy"}  # the binary_accuracy threshold
    assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[], ["cellar"], ["cultivar"]]  # by class too
    gate = evaluation.Gate.from_config(config)
    assert gate.fairness == () and "binary-only" in gate.binary_only
    result = evaluation.TfmaResult({"overall": {"example_count": 400.0, "sparse_categorical_accuracy": 0.9}}, {}, [], [])
    verdict = evaluation.judge(result, gate)
    assert verdict.blessed and verdict.not_gated == [gate.binary_only]


def test_the_taxi_gate_is_unchanged():
    gate = evaluation.Gate.from_config(PipelineConfig())
    assert gate.binary_only == "" and dict(gate.fairness) == {"fpr": 0.10, "fnr": 0.15}


def test_delivered_values_outside_the_classes_are_skipped_and_counted(config, tmp_path):
    root = tmp_path / "labels"
    root.mkdir()
    lines = [{"request_id": "a", "index": 0, "cultivar": "barbera"}, {"request_id": "a", "index": 1, "cultivar": "merlot"},
             {"request_id": "a", "index": 2, "cultivar": 3}]
    (root / "feed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    found = labels.read(root)
    assert found.outcomes == {("a", 0): {"cultivar": "barbera"}}
    assert (found.outside_classes, found.invalid_lines) == (1, 1)  # merlot outside; 3 not a string


def test_live_accuracy_compares_the_predicted_class_with_the_delivered_index(config):
    def record(i: int, predicted: int) -> dict:
        return {"request_id": "r", "index": i, "model_version": "1", "features": {"alcohol": 13.0},
                "output": {"probabilities": [0.2, 0.5, 0.3], "predicted_class": predicted}}

    pairs = [(record(i, i % 3), {"cultivar": wine.CULTIVARS[0 if i % 4 == 0 else i % 3]}) for i in range(300)]
    right = sum(r["output"]["predicted_class"] == wine.CULTIVARS.index(o["cultivar"]) for r, o in pairs)
    measured = live.measure(300, pairs, config, {"sparse_categorical_accuracy": 0.9})
    assert measured.accuracy == right / 300 and measured.offline_accuracy == 0.9
    assert (measured.auc, measured.positive_rate, measured.mean_probability) == (None, None, None)
    assert live.correct(*pairs[1]) and not live.correct(*pairs[4])
