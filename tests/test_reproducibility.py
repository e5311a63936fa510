"""Same window, code and seed give the same model, in another home with other paths, speedups on or off.

small_run trained on span 1 in one home; here `conveyor run` (the installed command) trains on a
copy of the same span in a second home whose paths differ (home, spans root, artifact ids), and
once more in a third with every speedup off (CONVEYOR_SPEEDUPS=0, speedups/__init__.py); the
models' predictions on the eval split, the Evaluator's metrics, the verdict and the model card are compared.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from metadata import connection, runs
from pipeline import configs, evaluation, versions

CONVEYOR = str(Path(configs.REPO_ROOT, ".venv", "bin", "conveyor"))


def _retrain(small_run, base: Path, **env: str) -> configs.PipelineConfig:
    """`conveyor run` of small_run's span 1 in a new home under `base`, with `env` added."""
    first, _ = small_run
    config = first.replace(home=base / "elsewhere", spans_root=base / "other-spans")
    shutil.copytree(first.spans_root, config.spans_root)
    done = subprocess.run(
        [CONVEYOR, "run", "--home", str(config.home), "--spans-root", str(config.spans_root), "--span", "1",
         "--train-steps", str(first.train_steps), "--eval-steps", str(first.eval_steps)],
        capture_output=True, text=True, timeout=1800, env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return config


@pytest.fixture(scope="module")
def second_home(small_run, tmp_path_factory):
    return _retrain(small_run, tmp_path_factory.mktemp("another") / "deeper" / "place")


@pytest.fixture(scope="module")
def home_without_speedups(small_run, tmp_path_factory):
    return _retrain(small_run, tmp_path_factory.mktemp("no-speedups"), CONVEYOR_SPEEDUPS="0")


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


def _assert_same_model(first: configs.PipelineConfig, other: configs.PipelineConfig) -> None:
    examples = _eval_examples(first)
    parsed = [tf.train.Example.FromString(e) for e in _eval_examples(other)]
    assert [tf.train.Example.FromString(e) for e in examples] == parsed and len(examples) > 100  # the same eval split
    ours, theirs = _predictions(first, examples), _predictions(other, examples)
    np.testing.assert_array_equal(ours, theirs)  # bit for bit: seeded shuffles, deterministic ops, float64 analyzers
    a, b = _evaluation(first), _evaluation(other)
    assert json.dumps(a.metrics, sort_keys=True) == json.dumps(b.metrics, sort_keys=True)  # NaN-aware: NaN != NaN
    assert (a.blessed, a.failures, a.not_gated) == (b.blessed, b.failures, b.not_gated)
    assert _card_content(first) == _card_content(other)  # intervals, importance, baseline, findings: all the same


def _card_content(config: configs.PipelineConfig) -> dict:
    """The serving version's model card without what names the run (version, date, ids, paths)."""
    version = versions.serving_version(config.serving_root)
    card = json.loads(Path(versions.card_file(config.serving_root, version, versions.CARD_JSON)).read_text())
    details = card["model_details"]
    for key in ("version", "run_id", "lineage"):
        details.pop(key)
    return card


def _infra_folded(config: configs.PipelineConfig) -> int:
    from pipeline.components.infra_check import FOLDED_KEY

    store = connection.open_store(connection.connection_config(config))
    blessing = runs.latest_run(store, config.pipeline_name).output("InfraCheck", "infra_blessing")
    return blessing.custom_properties[FOLDED_KEY].int_value


@pytest.mark.timeout(2400)  # a cold run in the second home
def test_a_retrain_in_another_home_gives_the_same_predictions_metrics_and_verdict(small_run, second_home):
    _assert_same_model(small_run[0], second_home)


@pytest.mark.timeout(2400)
def test_every_speedup_off_gives_the_same_model_metrics_and_verdict(small_run, home_without_speedups):
    """CONVEYOR_SPEEDUPS=0: the same model, while none of the four mechanisms acted (the run's log says so)."""
    first, _ = small_run
    _assert_same_model(first, home_without_speedups)
    assert (_infra_folded(first), _infra_folded(home_without_speedups)) == (1, 0)  # InfraCheck asked through the traced call
    on, off = ("".join(p.read_text() for p in c.logs_dir.glob("run-*.log")) for c in (first, home_without_speedups))
    for name in ("deferred_imports", "gc_tuning", "beam_memos", "folded_call"):
        assert f"{name} on" in on and f"{name} off: CONVEYOR_SPEEDUPS is off" in off, name
    assert "speedup folded_call is off: CONVEYOR_SPEEDUPS is off" in off  # said by InfraCheck as it kept the traced call
