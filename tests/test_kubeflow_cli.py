"""`conveyor kubeflow` as README.md and docs/production.md write it: the installed command (and
`python kubeflow_runner.py`) as processes, real files, no image, bucket or span given."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.kubeflow import compiler
from pipeline import configs
from tests.test_front_door import assert_quiet

CONVEYOR = Path(sys.executable).with_name("conveyor")  # the console script `make setup` installs
# Settings a developer's shell may hold that would stand in for what these tests leave out.
UNSET = ("CONVEYOR_HOME", "CONVEYOR_IMAGE", "CONVEYOR_REMOTE_PIPELINE_ROOT", "KF_PIPELINES_ENDPOINT",
         "CONVEYOR_GCP_PROJECT", "CONVEYOR_GCP_REGION")


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in UNSET}, **extra}


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=300)


def _checkout_kubeflow_files() -> dict[Path, int]:
    """What `conveyor kubeflow` ever wrote into the checkout's default home: spec and log, with mtimes."""
    outputs = configs.REPO_ROOT / "outputs"
    return {p: p.stat().st_mtime_ns for p in outputs.rglob("*kubeflow*")} if outputs.is_dir() else {}


def _tasks(spec_file: Path) -> dict[str, dict]:
    return yaml.safe_load(spec_file.read_text())["root"]["dag"]["tasks"]


def _images(spec_file: Path) -> set[str]:
    executors = yaml.safe_load(spec_file.read_text())["deploymentSpec"]["executors"]
    return {executor["container"]["image"] for executor in executors.values()}


@pytest.fixture(scope="module")
def readme_kfp(tmp_path_factory):
    """`conveyor kubeflow --target kfp --home H`, run from an empty folder."""
    base = tmp_path_factory.mktemp("kubeflow_readme")
    cwd, home = base / "cwd", base / "home"
    cwd.mkdir()
    before = _checkout_kubeflow_files()
    done = _run([str(CONVEYOR), "kubeflow", "--target", "kfp", "--home", str(home)], cwd)
    return {"done": done, "home": home, "cwd": cwd, "checkout": (before, _checkout_kubeflow_files())}


def test_the_readme_line_compiles_for_kfp_and_says_loudly_what_is_a_placeholder(readme_kfp):
    done, spec = readme_kfp["done"], readme_kfp["home"] / "kubeflow" / compiler.SPEC_FILE
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {spec} (kfp, image {compiler.PLACEHOLDER_IMAGE})" in done.stdout
    placeholders = f"--image {compiler.PLACEHOLDER_IMAGE}, --pipeline-root {compiler.PLACEHOLDER_ROOT}"
    assert f"NOT DEPLOYABLE: placeholders {placeholders}" in done.stdout
    assert spec.read_text().startswith(f"# NOT DEPLOYABLE: compiled with placeholders ({placeholders})")
    assert _images(spec) == {compiler.PLACEHOLDER_IMAGE}
    parameters = _tasks(spec)["CsvExampleGen"]["inputs"]["parameters"]
    assert parameters["input_base"]["runtimeValue"]["constant"] == f"{compiler.PLACEHOLDER_ROOT}/spans"
    assert_quiet(done)


def test_kfp_without_a_span_ingests_the_newest_at_run_time_uncached_and_says_why(readme_kfp):
    done, spec = readme_kfp["done"], readme_kfp["home"] / "kubeflow" / compiler.SPEC_FILE
    assert "each run ingests the newest span under gs://BUCKET/conveyor/spans at run time, with caching off: " \
        "KFP runs no ExampleGen driver" in done.stdout
    tasks = _tasks(spec)
    assert not any(task.get("cachingOptions", {}).get("enableCache") for task in tasks.values())
    assert "range_config" not in tasks["CsvExampleGen"]["inputs"]["parameters"]


def test_the_spec_and_the_log_go_under_the_home_and_nothing_into_the_checkout(readme_kfp):
    home = readme_kfp["home"]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()) == [
        f"kubeflow/{compiler.SPEC_FILE}", "logs/kubeflow.log",
    ]
    before, after = readme_kfp["checkout"]
    assert after == before
    assert list(readme_kfp["cwd"].iterdir()) == []


def test_kubeflow_runner_for_vertex_writes_under_conveyor_home_with_the_real_values(tmp_path):
    """As docs/production.md writes it, from the checkout, with the image and bucket from the environment."""
    image, root = "europe-docker.pkg.dev/proj/conveyor/conveyor:3f2c1ab", "gs://conveyor-bucket/prod"
    env = _env(CONVEYOR_HOME=str(tmp_path / "home"), CONVEYOR_IMAGE=image, CONVEYOR_REMOTE_PIPELINE_ROOT=root)
    before = _checkout_kubeflow_files()
    done = _run([sys.executable, "kubeflow_runner.py", "--target", "vertex"], configs.REPO_ROOT, env)
    assert done.returncode == 0, done.stdout + done.stderr
    spec = tmp_path / "home" / "kubeflow" / compiler.SPEC_FILE
    assert f"wrote {spec} (vertex, image {image})" in done.stdout and "NOT DEPLOYABLE" not in done.stdout
    assert f"the newest span under {root}/spans at run time (Vertex runs TFX's ExampleGen driver" in done.stdout
    assert _images(spec) == {image} and not spec.read_text().startswith("# NOT DEPLOYABLE")
    assert {task.get("cachingOptions", {}).get("enableCache") for task in _tasks(spec).values()} == {True}
    assert (tmp_path / "home" / "logs" / "kubeflow.log").exists()
    assert _checkout_kubeflow_files() == before


def test_everything_wrong_is_said_in_one_line_before_tensorflow_is_imported(tmp_path):
    argv = ["kubeflow", "--target", "vertex", "--image", "", "--pipeline-root", "data", "--data-root", "spans",
            "--spans-root", "data/spans", "--beam-mode", "dataflow", "--home", str(tmp_path / "home"), "--submit"]
    script = (
        "import sys\nfrom conveyor.cli import main\n"
        f"code = main({argv!r})\n"
        "print(code, sorted(m for m in ('tensorflow', 'tfx', 'apache_beam', 'kfp') if m in sys.modules))\n"
    )
    done = _run([sys.executable, "-c", script], tmp_path)
    assert done.stdout.splitlines() == ["2 []"], done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    for expected in (
        "--spans-root: only --check-locally uses it",
        "--image '': expected the image built from the Dockerfile",
        "--pipeline-root data: expected a URI",
        "--data-root spans: expected a URI",
        "--target vertex --submit needs --gcp-project and --gcp-region",
        "beam_mode=dataflow needs --gcp-project",
    ):
        assert expected in line, expected
    assert list(tmp_path.iterdir()) == []  # no home made, nothing written


def test_submit_refuses_placeholders_and_names_what_it_needs_in_one_line(tmp_path):
    done = _run([str(CONVEYOR), "kubeflow", "--target", "kfp", "--submit", "--home", str(tmp_path / "home")], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"conveyor kubeflow: --submit needs real values for the placeholders --image {compiler.PLACEHOLDER_IMAGE}, "
        f"--pipeline-root {compiler.PLACEHOLDER_ROOT}; {compiler.NEEDS_ENDPOINT}\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_cluster_home_is_refused_rather_than_made_a_local_folder(tmp_path):
    done = _run([str(CONVEYOR), "kubeflow", "--target", "kfp", "--home", "gs://conveyor-bucket/prod"], tmp_path)
    assert done.returncode == 2
    assert "--home gs://conveyor-bucket/prod is a URI" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no local gs:/conveyor-bucket/prod


def test_the_check_refuses_the_flags_it_would_ignore(tmp_path):
    done = _run([str(CONVEYOR), "kubeflow", "--target", "kfp", "--check-locally", "--span", "0", "--home", str(tmp_path)], tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("conveyor kubeflow: --check-locally does not use --home, --span")


def test_span_help_says_what_each_target_does_without_it(tmp_path):
    done = _run([str(CONVEYOR), "kubeflow", "--help"], tmp_path)
    text = re.sub(r"\s+", " ", done.stdout)
    assert "Without it: kfp compiles with caching off and each run ingests the newest span at run time" in text
    assert "vertex ingests the newest span at run time, with caching" in text
    assert f"else the placeholder {compiler.PLACEHOLDER_IMAGE}: the spec compiles, --submit refuses it" in text
