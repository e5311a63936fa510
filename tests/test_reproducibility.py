"""Same window, code and seed give the same model, in another home with other paths.

small_run trained on span 1 in one home; here `conveyor run` (the installed command) trains on a
copy of the same span in a second home whose paths differ (home, spans root, artifact ids), and the
two models' predictions on the eval split, the Evaluator's metrics and the verdict are compared.
"""
from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from metadata import connection, runs
from pipeline import configs, evaluation, versions

CONVEYOR = str(Path(configs.REPO_ROOT, ".venv", "bin", "conveyor"))


@pytest.fixture(scope="module")
def second_home(small_run, tmp_path_factory):
    first, _ = small_run
    base = tmp_path_factory.mktemp("another") / "deeper" / "place"
    config = first.replace(home=base / "elsewhere", spans_root=base / "other-spans")
    shutil.copytree(first.spans_root, config.spans_root)
    done = subprocess.run(
        [CONVEYOR, "run", "--home", str(config.home), "--spans-root", str(config.spans_root), "--span", "1",
         "--train-steps", str(first.train_steps), "--eval-steps", str(first.eval_steps)],
        capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return config


def _eval_examples(config: configs.PipelineConfig) -> list[bytes]:
    files = sorted(glob.glob(str(config.pipeline_root / "CsvExampleGen" / "examples" / "*" / "Split-eval" / "*")))
    return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _predictions(config: configs.PipelineConfig, examples: list[bytes]) -> np.ndarray:
    model = tf.saved_model.load(str(config.serving_root / versions.serving_version(config.serving_root)))
    return model.signatures["serving_default"](examples=tf.constant(examples))["probability"].numpy()


def _evaluation(config: configs.PipelineConfig) -> evaluation.Evaluation:
    store = connection.open_store(connection.connection_config(config))
    run = runs.latest_run(store, config.pipeline_name)
    return evaluation.load_evaluation(run.output("Evaluator", "evaluation").uri)


@pytest.mark.timeout(2400)  # a cold run in the second home
def test_a_retrain_in_another_home_gives_the_same_predictions_metrics_and_verdict(small_run, second_home):
    first, _ = small_run
    examples = _eval_examples(first)
    parsed = [tf.train.Example.FromString(e) for e in _eval_examples(second_home)]
    assert [tf.train.Example.FromString(e) for e in examples] == parsed and len(examples) > 100  # the same eval split
    ours, theirs = _predictions(first, examples), _predictions(second_home, examples)
    np.testing.assert_array_equal(ours, theirs)  # bit for bit: seeded shuffles, deterministic ops, float64 analyzers
    a, b = _evaluation(first), _evaluation(second_home)
    assert json.dumps(a.metrics, sort_keys=True) == json.dumps(b.metrics, sort_keys=True)  # NaN-aware: NaN != NaN
    assert (a.blessed, a.failures, a.not_gated) == (b.blessed, b.failures, b.not_gated)
