"""`conveyor lineage`: the chain behind the pushed model of a real run (the shared `small_run`)."""
from __future__ import annotations

import pytest

from conveyor import cli
from metadata import lineage
from pipeline import versions, user_code


@pytest.fixture(scope="module")
def traced(small_run):
    config, summary = small_run
    return config, summary, lineage.for_config(config)


def test_the_default_version_is_the_one_serving_now(traced):
    config, summary, found = traced
    assert found.serving_now and found.version == versions.serving_version(config.serving_root_uri)
    assert found.pushed_path == summary.pushed_path
    assert found.run_id == summary.run_id


def test_data_spans_files_statistics_anomalies_and_gate(traced):
    config, _, found = traced
    (span,) = found.spans
    assert span.span == 1
    assert span.data_files == [str(config.spans_root / "span-1" / "data.csv")]
    assert "num_files:1" in span.input_fingerprint
    assert span.anomalies == []
    assert "/StatisticsGen/statistics/" in span.statistics_uri
    assert "/DataGate/validated_examples/" in span.validated_uri


def test_schema_transform_and_trainer_with_steps_config_and_code(traced):
    config, _, found = traced
    assert found.schema_file == str(config.schema_path)
    assert "/Transform/transform_graph/" in found.transform_graph_uri
    assert (found.train_steps, found.eval_steps) == (config.train_steps, config.eval_steps)
    # The installed form (the default): the function by module path and a fingerprint of models/.
    assert found.custom_config == {**config.trainer_config(), user_code.CODE_VERSION_KEY: user_code.fingerprint()}
    assert found.trainer_code == f"{user_code.RUN_FN} (installed, code {user_code.fingerprint()})"


def test_evaluation_metrics_and_blessing_match_the_run(traced):
    _, summary, found = traced
    assert found.metrics == summary.evaluation.metrics["overall"]
    assert found.blessed and found.baseline is None


def test_the_command_prints_the_chain(small_run, capsys):
    config, summary = small_run
    assert cli.main(["lineage", "--home", str(config.home)]) == 0
    out = capsys.readouterr().out
    version = summary.pushed_path.rsplit("/", 1)[-1]
    assert out.startswith(f"model version {version} (serving now)\n")
    for line in ("data: training window spans [1]\n", "launched by: a person (conveyor run), not the CT controller",
                 "data gate  passed", "steps train 100, eval 5", "blessed yes"):
        assert line in out


def test_an_unknown_version_is_a_clear_error(small_run, capsys):
    config, _ = small_run
    assert cli.main(["lineage", "--home", str(config.home), "--version", "123"]) == 1
    assert f"no push to {config.serving_root_uri}/123 is recorded in ML Metadata" in capsys.readouterr().err
