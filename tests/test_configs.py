"""Beam runner settings, production locations and the MLMD connection, all from pipeline/configs.py."""
from __future__ import annotations

import pytest

from metadata import connection
from pipeline import configs, settings
from pipeline.configs import PipelineConfig


def test_local_beam_modes_run_the_fn_api_runner_and_build_no_package():
    # FnApiRunner, not DirectRunner: the DirectRunner first tries Prism, downloading it at run time.
    image = f"--sdk_container_image={settings.TFX_IMAGE}"  # a dependency flag: TFX builds no throwaway sdist
    assert PipelineConfig().beam_args() == [
        "--runner=FnApiRunner",
        "--direct_running_mode=in_memory",
        "--direct_num_workers=1",
        image,
    ]
    assert PipelineConfig(beam_mode="multi_processing", beam_workers=3).beam_args() == [
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=3",
        image,
    ]


def test_dataflow_gets_project_region_temp_location_and_the_setup_file():
    config = PipelineConfig(
        beam_mode="dataflow",
        gcp_project="proj",
        gcp_region="europe-west1",
        beam_temp_location="gs://bucket/tmp",
        beam_extra_args=("--max_num_workers=8",),
    )
    assert config.beam_args() == [
        "--runner=DataflowRunner",
        "--project=proj",
        "--region=europe-west1",
        "--temp_location=gs://bucket/tmp",
        f"--setup_file={configs.REPO_ROOT / 'setup.py'}",
        "--max_num_workers=8",
    ]


@pytest.mark.parametrize("mode", ["flink", "spark"])
def test_flink_and_spark_go_through_their_beam_job_server(mode):
    config = PipelineConfig(
        beam_mode=mode, beam_job_endpoint="jobserver:8099", beam_setup_file="/conveyor/setup.py"
    )
    assert config.beam_args() == [
        "--runner=PortableRunner",
        "--job_endpoint=jobserver:8099",
        "--environment_type=DOCKER",
        "--setup_file=/conveyor/setup.py",
    ]


def test_a_remote_runner_without_its_settings_is_refused_by_name():
    with pytest.raises(ValueError, match=r"--gcp-region .*--beam-temp-location"):
        PipelineConfig(beam_mode="dataflow", gcp_project="proj")
    with pytest.raises(ValueError, match="--beam-job-endpoint"):
        PipelineConfig(beam_mode="flink")
    with pytest.raises(ValueError, match="beam_mode='local': expected one of in_memory, multi_processing, dataflow"):
        PipelineConfig(beam_mode="local")


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("CONVEYOR_TRAIN_STEPS", "abc", "CONVEYOR_TRAIN_STEPS=abc: expected an integer"),
        ("CONVEYOR_TRAIN_STEPS", "-5", "CONVEYOR_TRAIN_STEPS=-5: expected a number >= 1"),
        ("CONVEYOR_GUARD_ALPHA", "1.5", "CONVEYOR_GUARD_ALPHA=1.5: expected a number between 0 and 1"),
        ("CONVEYOR_SERVING_PORT", "70000", "CONVEYOR_SERVING_PORT=70000: expected a port 0-65535"),
        ("CONVEYOR_POLL_SECONDS", "0", "CONVEYOR_POLL_SECONDS=0: expected a number > 0"),
        ("CONVEYOR_ENABLE_CACHE", "maybe", "CONVEYOR_ENABLE_CACHE=maybe: expected true or false"),
        ("CONVEYOR_DRIFT_POLICY", "stop", "CONVEYOR_DRIFT_POLICY=stop: expected one of block, warn"),
        ("CONVEYOR_BROKEN_MEANING_JSD", "1.5", "CONVEYOR_BROKEN_MEANING_JSD=1.5: expected a number above 0 and at most 1"),
    ],
)
def test_a_bad_variable_is_named_with_what_it_expects(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(configs.SettingError) as raised:
        configs.load()
    assert str(raised.value).startswith(message) and raised.value.source == "env"


def test_a_bad_override_names_the_setting_and_a_good_one_wins():
    with pytest.raises(configs.SettingError, match=r"^eval_steps=0: expected a number >= 1$") as raised:
        configs.load(eval_steps=0)
    assert raised.value.source == "override" and raised.value.field == "eval_steps"
    assert configs.load(eval_steps=3, enable_cache=False).eval_steps == 3


def test_the_beam_setting_and_its_args_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONVEYOR_BEAM_MODE", "spark")
    monkeypatch.setenv("CONVEYOR_BEAM_JOB_ENDPOINT", "spark-jobserver:8099")
    monkeypatch.setenv("CONVEYOR_BEAM_EXTRA_ARGS", "--sdk_worker_parallelism=2 --experiments=beam_fn_api")
    config = configs.load()
    assert config.beam_mode == "spark" and config.beam_job_endpoint == "spark-jobserver:8099"
    assert config.beam_args()[-2:] == ["--sdk_worker_parallelism=2", "--experiments=beam_fn_api"]


def test_every_beam_powered_component_gets_the_configured_args():
    from tfx.dsl.components.base import executor_spec

    from pipeline.pipeline import create_pipeline

    config = PipelineConfig(beam_mode="multi_processing", beam_workers=2)
    pipeline = create_pipeline(config)
    beam_powered = [
        c.id for c in pipeline.components if isinstance(getattr(c, "executor_spec", None), executor_spec.BeamExecutorSpec)
    ]
    # Every component gets the pipeline's args; these are the ones that run Beam with them.
    assert {"CsvExampleGen", "StatisticsGen", "Transform", "Evaluator"} <= set(beam_powered)
    assert pipeline.beam_pipeline_args == config.beam_args()


def test_locations_default_to_home_and_take_uris_unchanged(tmp_path):
    local = PipelineConfig(home=tmp_path)
    assert local.pipeline_root_uri == str(tmp_path / "pipeline_root")
    assert local.serving_root_uri == str(tmp_path / "serving_model")
    remote = local.replace(remote_pipeline_root="gs://b/root", remote_serving_root="gs://b/serving")
    assert remote.pipeline_root_uri == "gs://b/root"  # a Path would have collapsed gs:// to gs:/
    assert remote.validated_spans_uri == "gs://b/root/validated_spans"
    assert remote.serving_root_uri == "gs://b/serving"


def test_mlmd_is_sqlite_by_default_and_mysql_from_the_environment(monkeypatch, tmp_path):
    assert connection.connection_config(PipelineConfig(home=tmp_path)).sqlite.filename_uri == str(
        tmp_path / "metadata.sqlite"
    )
    monkeypatch.setenv("CONVEYOR_MYSQL_HOST", "db.internal")
    monkeypatch.setenv("CONVEYOR_MYSQL_PORT", "3307")
    monkeypatch.setenv("CONVEYOR_MYSQL_DATABASE", "mlmd")
    monkeypatch.setenv("CONVEYOR_MYSQL_USER", "pipeline")
    monkeypatch.setenv(connection.MYSQL_PASSWORD_ENV, "s3cret")
    config = configs.load()
    mlmd = connection.connection_config(config)
    assert (mlmd.mysql.host, mlmd.mysql.port, mlmd.mysql.database, mlmd.mysql.user) == (
        "db.internal",
        3307,
        "mlmd",
        "pipeline",
    )
    assert mlmd.mysql.password == "s3cret"
    assert "s3cret" not in repr(config)  # the password is never part of the config
    assert connection.describe(mlmd) == "mysql://pipeline@db.internal:3307/mlmd"
