"""The blessing rule on real TFMA evaluations of real models (pipeline/evaluation.py).

TFMA runs in-process with the pipeline's EvalConfig, the candidate against a baseline as the
Evaluator runs it, on 3,000 shipped trips as tf.Examples; `judge` decides from what TFMA wrote.
  - a candidate that is small_run's model except in one hour of the day: the overall slice holds,
    that hour's slice is refused and named (no other hour);
  - an eval split with no positive label: AUC reads 0.0 and is not gated, accuracy gates;
  - a candidate that misses big tippers in one hour of the day (its probabilities halved there):
    the fairness gate refuses it, naming that hour and both false negative rates.
The verdict is the whole rule as the Evaluator applies it (`fairness.judge`).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from models.instances import from_row, to_example
from pipeline import configs, evaluation, fairness, versions
from pipeline.thresholds import Threshold
from tests import taxi

BROKEN_HOUR = 18


class OneSliceBroken(tf.Module):
    """A model's signatures, with the probability inverted (`shy`: halved) for trips starting at BROKEN_HOUR."""

    def __init__(self, path: str, shy: bool = False):
        super().__init__()
        self.inner = tf.saved_model.load(path)
        self.shy = shy

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        probability = self.inner.signatures["serving_default"](examples=examples)["probability"]
        hour = tf.io.parse_example(examples, {"trip_start_hour": tf.io.FixedLenFeature([], tf.int64, default_value=0)})
        broken = tf.equal(hour["trip_start_hour"], BROKEN_HOUR)
        probability = tf.where(broken, 0.5 * probability if self.shy else 1.0 - probability, probability)
        return {"probability": probability, "predicted_class": tf.cast(probability > 0.5, tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.inner.signatures["transform_features"](examples=examples)


def _examples(rows: list[dict], path: Path) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            writer.write(to_example({**from_row(row), "tips": float(row["tips"])}))
    return str(path)


def _evaluate(config: configs.PipelineConfig, candidate: str, baseline: str, data: str, out: Path) -> evaluation.Verdict:
    eval_config = evaluation.eval_config(config)
    spec = eval_config.model_specs[0]
    eval_config.model_specs.pop()
    for name, is_baseline in ((tfma.CANDIDATE_KEY, False), (tfma.BASELINE_KEY, True)):
        named = eval_config.model_specs.add()
        named.CopyFrom(spec)
        named.name, named.is_baseline = name, is_baseline
    models = [
        tfma.default_eval_shared_model(path, eval_config=eval_config, model_name=name)
        for name, path in ((tfma.CANDIDATE_KEY, candidate), (tfma.BASELINE_KEY, baseline))
    ]
    tfma.run_model_analysis(eval_shared_model=models, eval_config=eval_config, data_location=data, output_path=str(out))
    return fairness.judge(evaluation.load_tfma_result(str(out)), evaluation.Gate.from_config(config))


@pytest.fixture(scope="module")
def served(small_run) -> str:
    config, _ = small_run
    return str(config.serving_root / versions.serving_version(config.serving_root))


def test_a_candidate_that_breaks_one_slice_is_refused_naming_it(served, shipped_rows, tmp_path):
    rows = [r for r in shipped_rows[:3000] if float(r["fare"]) > 0]
    broken = tmp_path / "broken"
    module = OneSliceBroken(served)
    tf.saved_model.save(module, str(broken), signatures={"serving_default": module.serve, "transform_features": module.transform})
    # A loose overall tolerance, so only the per-slice gate can refuse this candidate.
    config = configs.PipelineConfig(thresholds=(Threshold("binary_accuracy", 0.5, max_drop=0.1, slice_max_drop=0.05),))
    verdict = _evaluate(config, str(broken), served, _examples(rows, tmp_path / "data.tfrecord"), tmp_path / "out")
    assert not verdict.blessed
    slice_name = f"trip_start_hour={BROKEN_HOUR}"
    [hour] = [r for r in verdict.refusals if r.startswith("trip_start_hour=") and "binary_accuracy" in r]
    assert hour.startswith(f"{slice_name} (") and "binary_accuracy dropped" in hour and "(at most 0.05 allowed)" in hour
    # The overall slice holds; a payment type may be refused too, for its trips at that hour.
    assert all(r.startswith(("trip_start_hour=", "payment_type=")) for r in verdict.refusals), verdict
    counts = [int(re.search(r"\((\d+) (?:\w+ )?examples\)", r).group(1)) for r in verdict.refusals]
    assert min(counts) >= config.min_slice_examples  # smaller slices are never what refuses


def test_an_eval_split_without_a_positive_label_is_judged_on_accuracy(served, shipped_rows, tmp_path):
    negatives = [r for r in shipped_rows[:3000] if not taxi.is_big_tipper(float(r["tips"]), float(r["fare"]))]
    config = configs.PipelineConfig()
    verdict = _evaluate(config, served, served, _examples(negatives, tmp_path / "data.tfrecord"), tmp_path / "out")
    result = evaluation.load_tfma_result(str(tmp_path / "out"))
    overall = result.metrics["overall"]
    assert overall["true_positives"] == overall["false_negatives"] == 0 and overall["example_count"] == len(negatives)
    assert overall["auc"] == 0.0  # what TFMA reports: undefined, read as 0
    assert any(f.metric == "auc" and f.slice == "overall" for f in result.failures)  # TFMA alone would refuse
    assert overall["binary_accuracy"] > 0.7
    assert verdict.blessed, verdict.refusals
    assert verdict.not_gated[0].startswith(f"overall: auc not gated (0 positive, {len(negatives)} negative eval examples < 10 of each class")


def test_a_candidate_that_misses_big_tippers_in_one_hour_is_refused_by_the_fairness_gate(served, shipped_rows, tmp_path):
    rows = [r for r in shipped_rows if float(r["fare"]) > 0]  # span 1: an hour of 6 pm holds 100+ big tippers
    shy = tmp_path / "shy"
    module = OneSliceBroken(served, shy=True)
    tf.saved_model.save(module, str(shy), signatures={"serving_default": module.serve, "transform_features": module.transform})
    # Accuracy and AUC gate nothing here (their drops are allowed): only the fairness gate can refuse.
    loose = tuple(Threshold(m, 0.0, max_drop=1.0, slice_max_drop=1.0) for m in ("binary_accuracy", "auc"))
    config = configs.PipelineConfig(thresholds=loose)
    verdict = _evaluate(config, str(shy), served, _examples(rows, tmp_path / "data.tfrecord"), tmp_path / "out")
    assert not verdict.blessed
    [refusal] = [r for r in verdict.refusals if "false negative rate" in r]
    bound = dict(evaluation.Gate.from_config(config).fairness)["fnr"]
    match = re.fullmatch(
        rf"trip_start_hour={BROKEN_HOUR} \((\d+) positive examples\): false negative rate (\d\.\d+) against (0\.\d+) overall, "
        rf"a gap of \+(0\.\d+) that widened by (0\.\d+) from the baseline's [+-]0\.\d+ \(at most {bound:g} allowed\)",
        refusal,
    )
    assert match, refusal
    positives, rate, overall, gap, widened = match.groups()
    assert int(positives) >= config.fairness_min_examples and float(widened) > bound
    assert float(gap) == pytest.approx(float(rate) - float(overall), abs=2e-4) and float(gap) > bound
    assert all(r.startswith(f"trip_start_hour={BROKEN_HOUR} (") for r in verdict.refusals), verdict.refusals
