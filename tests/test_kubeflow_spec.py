"""The Kubeflow v2 / Vertex spec: compiled by `kubeflow_runner.py` from the same create_pipeline()."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from conveyor import cli
from conveyor.kubeflow import compiler as kubeflow
from metadata import connection
from pipeline import configs, user_code

IMAGE = "europe-docker.pkg.dev/proj/conveyor/conveyor:3f2c1ab"
ROOT = "gs://conveyor-bucket/prod"
BEAM = [
    "--beam-mode=dataflow",
    "--gcp-project=proj",
    "--gcp-region=europe-west1",
    "--beam-temp-location=gs://conveyor-bucket/tmp",
    "--beam-extra-arg=--max_num_workers=8",
]
SECRET = "never-in-the-spec-7f3a"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """`python kubeflow_runner.py --target vertex ...` with Dataflow Beam args, MySQL settings in the env."""
    base = tmp_path_factory.mktemp("kubeflow")
    output = base / "conveyor.yaml"
    env = {"CONVEYOR_MYSQL_HOST": "db.internal", connection.MYSQL_PASSWORD_ENV: SECRET, "CONVEYOR_TRAIN_STEPS": "300"}
    command = [sys.executable, "kubeflow_runner.py", "--target", "vertex", "--image", IMAGE, "--pipeline-root", ROOT]
    done = subprocess.run(
        [*command, "--output", str(output), "--home", str(base / "home"), *BEAM],
        cwd=configs.REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {output} (vertex, image {IMAGE})" in done.stdout
    assert "NOT DEPLOYABLE" not in done.stdout and "NOT DEPLOYABLE" not in output.read_text()
    config = kubeflow.cluster_config(
        configs.load(
            remote_pipeline_root=ROOT,
            train_steps=300,
            beam_mode="dataflow",
            gcp_project="proj",
            gcp_region="europe-west1",
            beam_temp_location="gs://conveyor-bucket/tmp",
            beam_extra_args=("--max_num_workers=8",),
        ),
        "vertex",
    )
    return config, output, yaml.safe_load(output.read_text())


def _local_dag(config: configs.PipelineConfig) -> dict[str, set[str]]:
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(config)
    return {node.id: {up.id for up in node.upstream_nodes} for node in pipeline.components}


def _compiled_dag(spec: dict) -> dict[str, set[str]]:
    return {name: set(task.get("dependentTasks", [])) for name, task in spec["root"]["dag"]["tasks"].items()}


def _executor(spec: dict, task: str) -> dict:
    label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]


def test_the_spec_parses_with_kfps_own_types(compiled):
    import kfp.components

    _, output, spec = compiled
    parsed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert parsed.schema_version == "2.1.0" and parsed.pipeline_info.name == "conveyor-taxi"
    assert kfp.components.load_component_from_file(str(output)).name == "conveyor-taxi"


def test_tasks_and_dependencies_equal_the_local_pipeline_with_the_same_history_source(compiled):
    config, _, spec = compiled
    assert config.history == "stores"
    assert _compiled_dag(spec) == _local_dag(config)


def test_the_stores_substitution_keeps_the_dag_of_the_local_default(compiled):
    """The default's nodes and edges, with the two documented differences of the stores form: no
    analyzer_cache resolver (its window is one new artifact per run, which no cache entry matches),
    and span_window reads this run's span from DataGate's output rather than from CsvExampleGen's."""
    _, _, spec = compiled
    local = _local_dag(configs.PipelineConfig())
    del local["analyzer_cache"]
    local["Transform"].discard("analyzer_cache")
    local["span_window"].discard("CsvExampleGen")
    assert _compiled_dag(spec) == local
    assert {"previous_statistics", "span_window", "baseline_model"} <= set(_compiled_dag(spec))
    assert "previous_statistics" in spec["root"]["dag"]["tasks"]["DataGate"]["dependentTasks"]


def test_every_beam_powered_component_carries_the_configured_beam_args(compiled):
    config, _, spec = compiled
    expected = config.beam_args()
    assert "--runner=DataflowRunner" in expected and "--setup_file=/conveyor/setup.py" in expected
    for task in ("CsvExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Evaluator"):
        container = _executor(spec, task)["container"]
        assert container["args"][-len(expected):] == expected, task
    driver = _executor(spec, "CsvExampleGen")["container"]["lifecycle"]["preCacheCheck"]
    assert driver["args"][-len(expected):] == expected


def test_every_task_runs_the_configured_image_with_conveyor_code_by_module_path(compiled):
    _, _, spec = compiled
    for task in spec["root"]["dag"]["tasks"]:
        assert _executor(spec, task)["container"]["image"] == IMAGE, task
    params = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    assert params["run_fn"]["runtimeValue"]["constant"] == user_code.RUN_FN
    assert "module_file" not in params and "module_path" not in params
    transform = spec["root"]["dag"]["tasks"]["Transform"]["inputs"]["parameters"]
    assert transform["preprocessing_fn"]["runtimeValue"]["constant"] == user_code.PREPROCESSING_FN


def test_values_come_from_flags_and_environment_as_uris(compiled):
    _, _, spec = compiled
    tasks = spec["root"]["dag"]["tasks"]

    def constant(task: str, name: str) -> str:
        return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]

    assert constant("CsvExampleGen", "input_base") == f"{ROOT}/spans"
    assert constant("ImportSchemaGen", "schema_file") == f"{kubeflow.IMAGE_APP_DIR}/schema/schema.pbtxt"
    assert f"{ROOT}/serving_model" in constant("Pusher", "push_destination")
    assert constant("baseline_model", "serving_root") == f"{ROOT}/serving_model"
    assert constant("span_window", "index_uri") == f"{ROOT}/validated_spans"
    assert '"num_steps": 300' in constant("Trainer", "train_args")  # CONVEYOR_TRAIN_STEPS


def test_no_build_machine_path_and_no_credential_leaks_into_the_spec(compiled):
    _, output, _ = compiled
    text = output.read_text()
    for local in {str(configs.REPO_ROOT), sys.prefix, tempfile.gettempdir(), str(Path.home())}:
        # A local path, not a segment of a URI such as gs://bucket/tmp.
        assert not re.search(r"(?<![\w.-])" + re.escape(local), text), local
    assert SECRET not in text
    assert "db.internal" not in text  # MLMD on a cluster is the orchestrator's, not ours


def test_a_code_change_changes_the_compiled_code_version(compiled, tmp_path):
    _, _, spec = compiled
    params = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    assert f'"code_version": "{user_code.fingerprint()}"' in params["custom_config"]["runtimeValue"]["constant"]
    copy = tmp_path / "models"
    shutil.copytree(user_code.MODELS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert user_code.fingerprint(copy) == user_code.fingerprint()
    with open(copy / "model.py", "a") as handle:
        handle.write("\n# a change\n")
    assert user_code.fingerprint(copy) != user_code.fingerprint()


def test_no_runtime_parameter_is_compiled_in(compiled):
    _, _, spec = compiled
    assert not spec["root"].get("inputDefinitions", {}).get("parameters")


def test_the_compiler_still_drops_runtime_parameter_defaults(tmp_path):
    """Why conveyor/kubeflow/compiler.py compiles values in (tensorflow/tfx#7733): if this fails, TFX fixed it."""
    from tfx import v1 as tfx
    from tfx.orchestration import data_types

    schema_file = data_types.RuntimeParameter(name="schema_file", ptype=str, default="/conveyor/schema/schema.pbtxt")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="runtime-parameter",
        pipeline_root="gs://bucket/root",
        components=[tfx.components.ImportSchemaGen(schema_file=schema_file)],
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=IMAGE, use_pipeline_spec_2_1=True),
        output_dir=str(tmp_path),
    )
    job = runner.run(pipeline, write_out=False)
    declared = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["schema_file"]
    assert "defaultValue" not in declared
    assert "parameterValues" not in job["runtimeConfig"]


def test_local_paths_for_cluster_locations_are_refused_by_flag_in_one_line(capsys, tmp_path):
    command = ["kubeflow", "--target", "kfp", "--image", IMAGE, "--home", str(tmp_path / "home")]
    assert cli.main([*command, "--pipeline-root", str(tmp_path), "--data-root", "data", "--serving-root", ROOT]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"--pipeline-root {tmp_path}: expected a URI the cluster can read" in line
    assert "--data-root data: expected a URI the cluster can read" in line and "--serving-root" not in line
    assert not (tmp_path / "home").exists()


def test_kfp_compiles_a_span_in_with_caching_or_the_newest_span_without_caching(capsys, tmp_path):
    """Open-source KFP runs no ExampleGen driver: a span resolved at run time comes after the cache
    check, so without --span the spec is compiled with caching off (and says so)."""
    command = ["kubeflow", "--target", "kfp", "--image", IMAGE, "--pipeline-root", ROOT, "--home", str(tmp_path)]
    assert cli.main([*command, "--span", "3", "--output", str(tmp_path / "span.yaml")]) == 0
    assert "span: none compiled in" not in capsys.readouterr().out
    assert cli.main([*command, "--output", str(tmp_path / "newest.yaml")]) == 0
    assert "the newest span under gs://conveyor-bucket/prod/spans at run time, with caching off" in capsys.readouterr().out
    span, newest = (yaml.safe_load((tmp_path / f"{name}.yaml").read_text()) for name in ("span", "newest"))
    assert {task.get("cachingOptions", {}).get("enableCache") for task in span["root"]["dag"]["tasks"].values()} == {True}
    assert not any(task.get("cachingOptions", {}).get("enableCache") for task in newest["root"]["dag"]["tasks"].values())
    assert "range_config" in span["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]
    assert "range_config" not in newest["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]
    with pytest.raises(ValueError, match="--target kfp with caching needs --span N"):
        kubeflow.check_target(configs.PipelineConfig(), "kfp")  # what programmatic callers (CT) are held to
    example_gen = _executor(span, "CsvExampleGen")["container"]
    # The same spec serves Vertex: its driver hook stays; the executor resolves the span where no driver ran.
    assert example_gen["args"][1] == "pipeline.components.example_gen.SpanResolvingExecutor"
    assert example_gen["lifecycle"]["preCacheCheck"]["command"][-1] == "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"


def test_an_empty_image_is_refused_with_a_clear_message(capsys, tmp_path):
    code = cli.main(["kubeflow", "--target", "kfp", "--image", "", "--pipeline-root", ROOT, "--home", str(tmp_path / "home")])
    assert code == 2
    assert "--image '': expected the image built from the Dockerfile and pushed" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()
