"""Compile Conveyor for Kubeflow Pipelines v2 / Vertex AI, and submit the compiled spec.

The spec is KubeflowV2DagRunner's compilation of the same create_pipeline(), with the choices a
cluster needs (`cluster_config`):
  - history="stores": the span window and the two baselines (model, drift) are components,
    because the KFP v2 compiler only compiles LatestArtifactStrategy / LatestBlessedModelStrategy
    resolvers, and its resolver queries match artifacts by type across the whole metadata store
    (not by producer or pipeline), so they could not keep the data gate or a span window;
  - user_code="installed": Transform and Trainer name functions of the package installed in the
    image (a module_file would be packaged into a wheel at a path of the build machine);
  - every location is a URI the cluster reads (pipeline root, data, serving root), and the
    schema and setup.py are the copies inside the image (IMAGE_APP_DIR); a home that accepted a
    schema version after the curated one (schema/versions.py) compiles only with --schema naming
    that version's file in the bucket, and the import checks it holds that version (sha256);
  - for target "kfp", a span fixed at compile time, or caching off (`check_target`): open-source
    KFP runs no ExampleGen driver, so the newest span cannot be resolved before its cache check.

A spec can be compiled offline, before the image is built and the bucket exists: the image and the
pipeline root then hold the documented placeholders (PLACEHOLDER_IMAGE, PLACEHOLDER_ROOT), which no
registry or bucket can match, the spec file says so in its first lines, and nothing submits such
a spec (`placeholders`).

No RuntimeParameter is used: KubeflowV2DagRunner (TFX 1.21) declares a RuntimeParameter as a
root input without its default and leaves the runtime config empty, so the default is lost and a
run started without passing every value has none (RuntimeParameters on KFP v2 are reported broken
since TFX 1.16, tensorflow/tfx#7733). Every value is fixed at compile time from flags and
CONVEYOR_* variables instead; compiling takes seconds. tests/test_kubeflow_spec.py checks the
compiler still drops the defaults.

On KFP and Vertex the orchestrator keeps ML Metadata itself (the cluster's MLMD, or Vertex ML
Metadata); the compiled spec carries no metadata connection and no credential.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from data import spans_io
from pipeline.configs import PipelineConfig

TARGETS = ("kfp", "vertex")
IMAGE_APP_DIR = "/conveyor"  # the Dockerfile's WORKDIR: Conveyor's files inside the image
SPEC_FILE = "conveyor-kubeflow.yaml"
# What docs/production.md writes for the values only a deployment knows; upper case makes both
# invalid (an image repository and a bucket name are lower case), so they can never reach a real one.
PLACEHOLDER_IMAGE = "REGISTRY/conveyor:TAG"
PLACEHOLDER_ROOT = "gs://BUCKET/conveyor"
_PLACEHOLDER_BUCKET = "gs://BUCKET/"
NEEDS_ENDPOINT = "--target kfp --submit needs --endpoint (or KF_PIPELINES_ENDPOINT): the URL of the Kubeflow Pipelines API"
NEEDS_PROJECT = "--target vertex --submit needs --gcp-project and --gcp-region (or CONVEYOR_GCP_PROJECT, CONVEYOR_GCP_REGION)"


class SubmitError(RuntimeError):
    """The compiled spec could not be sent: missing endpoint or credentials, or a refused request."""


KFP_NEEDS_SPAN = (
    "--target kfp with caching needs --span N: open-source Kubeflow Pipelines runs no ExampleGen "
    "driver, so nothing resolves the newest span before the cache check and a cached run would be "
    "given an earlier run's examples. Compile one spec per span (conveyor.kubeflow.cluster_runs.submit does)"
)


def cluster_config(config: PipelineConfig, target: str) -> PipelineConfig:
    """`config` as the pipeline runs on `target`; locations default to folders of the pipeline root.
    ValueError naming every location that is not a URI the cluster reads, or what `target` cannot run."""
    problems = location_problems(config)
    if problems:
        raise ValueError("; ".join(problems))
    cluster = stores_form(config, config.remote_pipeline_root, app_dir=IMAGE_APP_DIR)
    check_target(cluster, target)
    return cluster


def location_problems(config: PipelineConfig) -> list[str]:
    """One phrase per location of `config` that a cluster could not read (not a URI), by flag."""
    root, problems = config.remote_pipeline_root, []
    if not (root and spans_io.is_uri(root)):
        problems.append(f"--pipeline-root{f' {root}' if root else ''}: expected a URI the cluster can read, e.g. gs://bucket/conveyor")
    for flag, value in (("--serving-root", config.remote_serving_root), ("--data-root", config.remote_spans_root)):
        if value is not None and not spans_io.is_uri(value):
            problems.append(f"{flag} {value}: expected a URI the cluster can read (default: under --pipeline-root)")
    return problems + schema_problems(config)


def schema_problems(config: PipelineConfig) -> list[str]:
    """The image holds the curated schema (version 1); a home that accepted a later version must
    name where the cluster reads that version's file (--schema), whose sha256 the import checks."""
    from schema import versions

    version = versions.current(config.home, config.schema_path)
    if version.version == 1 or config.remote_schema:
        return []
    name = Path(version.file).name
    return [f"--schema: this home imports schema {version.describe()}, not the image's curated version 1: "
            f"copy {version.file} to the bucket and pass --schema gs://BUCKET/.../{name}"]


def placeholders(config: PipelineConfig, image: str) -> list[str]:
    """The documented placeholders a spec of `config` and `image` would hold, as "--flag value"
    (a location derived from a placeholder pipeline root is not named again)."""
    root = (config.remote_pipeline_root or "").rstrip("/")
    named = [("--image", image, image == PLACEHOLDER_IMAGE), ("--pipeline-root", root, root.startswith(_PLACEHOLDER_BUCKET))]
    for flag, value, derived in (
        ("--serving-root", config.remote_serving_root, f"{root}/serving_model"),
        ("--data-root", config.remote_spans_root, f"{root}/spans"),
    ):
        named.append((flag, value, bool(value) and value.startswith(_PLACEHOLDER_BUCKET) and value != derived))
    return [f"{flag} {value}" for flag, value, placeholder in named if placeholder]


def submit_problems(config: PipelineConfig, target: str, image: str, endpoint: str | None) -> list[str]:
    """What sending a spec of `config` and `image` to `target` still lacks, one phrase each."""
    found = placeholders(config, image)
    problems = [f"--submit needs real values for the placeholders {', '.join(found)}"] if found else []
    if target == "kfp" and not endpoint:
        problems.append(NEEDS_ENDPOINT)
    if target == "vertex" and not (config.gcp_project and config.gcp_region):
        problems.append(NEEDS_PROJECT)
    return problems


def stores_form(config: PipelineConfig, root: str, app_dir: str) -> PipelineConfig:
    """The form the compiled spec takes (see the module docstring), rooted at `root`, reading the
    schema and setup.py from `app_dir` unless set (the image's /conveyor, or a checkout)."""
    root = root.rstrip("/")
    return config.replace(
        history="stores",
        user_code="installed",
        remote_pipeline_root=root,
        remote_serving_root=config.remote_serving_root or f"{root}/serving_model",
        remote_spans_root=config.remote_spans_root or f"{root}/spans",
        remote_feedback_spans_root=config.remote_feedback_spans_root or f"{root}/feedback/spans",
        remote_schema=config.remote_schema or f"{app_dir}/schema/schema.pbtxt",
        beam_setup_file=config.beam_setup_file or f"{app_dir}/setup.py",
    )


def check_target(config: PipelineConfig, target: str) -> None:
    """Refuse what `target` cannot run (see docs/production.md, "What runs where")."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "kfp" and config.span is None and config.enable_cache:
        raise ValueError(KFP_NEEDS_SPAN)


def compile_spec(config: PipelineConfig, image: str, output: Path) -> dict[str, Any]:
    """Write the KFP v2 pipeline spec (YAML, schema 2.1) of `config` to `output`; return it. A spec
    holding placeholders starts with comment lines naming them."""
    if not image:
        raise ValueError("--image is required: the container image with Conveyor installed (see Dockerfile)")
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True
        ),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    spec = runner.run(create_pipeline(config))["pipelineSpec"]
    found = placeholders(config, image)
    if found and output.suffix in (".yaml", ".yml"):
        output.write_text(
            f"# NOT DEPLOYABLE: compiled with placeholders ({', '.join(found)}).\n"
            "# Build and push the image (Dockerfile), then compile again with the real values.\n" + output.read_text()
        )
    return spec


def submit_kfp(
    spec_path: Path, config: PipelineConfig, endpoint: str | None, experiment: str, run_name: str | None = None
) -> str:
    """Create a run of the compiled spec on Kubeflow Pipelines, writing under the pipeline root;
    returns the run id. (KFP keeps no pipeline root in the spec: without one it would use its own
    default artifact store.)"""
    import kfp
    import kfp_server_api
    import urllib3

    if not endpoint:
        raise SubmitError(NEEDS_ENDPOINT)
    try:
        result = kfp.Client(host=endpoint).create_run_from_pipeline_package(
            str(spec_path),
            run_name=run_name or config.pipeline_name,
            experiment_name=experiment,
            pipeline_root=config.pipeline_root_uri,
            enable_caching=config.enable_cache,
        )
    except kfp_server_api.ApiException as exc:
        raise SubmitError(f"the KFP API at {endpoint} refused the run: {exc.status} {exc.reason}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise SubmitError(f"cannot reach the KFP API at {endpoint}: {exc}") from exc
    return result.run_id


def vertex_job(
    spec_path: Path,
    config: PipelineConfig,
    credentials: Any = None,
    display_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> Any:
    """An aiplatform.PipelineJob for the compiled spec (not sent yet)."""
    import google.auth
    from google.cloud import aiplatform

    if not (config.gcp_project and config.gcp_region):
        raise SubmitError(NEEDS_PROJECT)
    if credentials is None:
        try:
            credentials, _ = google.auth.default()
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise SubmitError(
                "no Google Cloud credentials: run `gcloud auth application-default login` or set "
                f"GOOGLE_APPLICATION_CREDENTIALS ({exc})"
            ) from exc
    return aiplatform.PipelineJob(
        display_name=display_name or config.pipeline_name,
        labels=labels,
        template_path=str(spec_path),
        pipeline_root=config.pipeline_root_uri,
        enable_caching=config.enable_cache,
        project=config.gcp_project,
        location=config.gcp_region,
        credentials=credentials,
    )


def submit_vertex(
    spec_path: Path,
    config: PipelineConfig,
    service_account: str | None,
    display_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Submit the compiled spec to Vertex AI Pipelines; returns the job's resource name."""
    from google.api_core import exceptions

    job = vertex_job(spec_path, config, display_name=display_name, labels=labels)
    try:
        job.submit(service_account=service_account)
    except exceptions.GoogleAPIError as exc:
        raise SubmitError(f"Vertex AI refused the pipeline job: {exc}") from exc
    return job.resource_name


def summary(spec: dict[str, Any]) -> str:
    """One line per task: name <- the tasks it waits for."""
    tasks = spec["root"]["dag"]["tasks"]
    return "\n".join(
        f"  {name:<18} <- {', '.join(sorted(task.get('dependentTasks', []))) or '-'}" for name, task in sorted(tasks.items())
    )
