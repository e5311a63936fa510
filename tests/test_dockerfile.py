"""The Dockerfile (not buildable here) stays consistent with requirements.lock, setup.py and the runner."""
from __future__ import annotations

import re

from conveyor.kubeflow import compiler as kubeflow
from pipeline import configs, settings

DOCKERFILE = (configs.REPO_ROOT / "Dockerfile").read_text()
LOCK = dict(
    line.split("==", 1) for line in (configs.REPO_ROOT / "requirements.lock").read_text().splitlines() if "==" in line
)
SETUP = (configs.REPO_ROOT / "setup.py").read_text()


def _instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_the_base_is_the_official_tfx_image_of_the_locked_tfx_version():
    (base,) = _instructions("FROM")
    assert base == f"gcr.io/tfx-oss-public/tfx:{LOCK['tfx']}" == settings.TFX_IMAGE  # KubeflowV2DagRunner's default image


def test_the_image_installs_exactly_the_lock_then_conveyor_without_resolving():
    installs = [line for line in _instructions("RUN") if "pip install" in line]
    assert "--no-deps -r requirements.lock" in installs[0]
    assert installs[1].startswith("python -m pip install --no-cache-dir --no-deps --no-build-isolation .")
    # Without build isolation, Conveyor is built with the locked build backend (pyproject.toml's), not a fresh download.
    assert {"setuptools", "wheel"} <= LOCK.keys()


def test_the_image_provides_the_conveyor_command_the_deploy_manifests_run():
    """deploy/*.yaml run `conveyor ...`: the console script setup.py installs into the image."""
    assert '"conveyor=conveyor.cli:main"' in SETUP
    for manifest in ("serving.yaml", "ct-tick.yaml"):
        assert 'command: ["conveyor"]' in (configs.REPO_ROOT / "deploy" / manifest).read_text(), manifest


def test_the_python_the_image_requires_is_the_one_setup_py_requires():
    (low, high) = re.search(r'python_requires=">=(\d+\.\d+),<(\d+\.\d+)"', SETUP).groups()
    major, minor = (int(x) for x in low.split("."))
    assert f"sys.version_info[:2] == ({major}, {minor})" in DOCKERFILE
    assert high == f"{major}.{minor + 1}"


def test_the_image_holds_every_package_and_the_files_the_compiled_spec_points_at():
    (workdir,) = _instructions("WORKDIR")
    assert workdir == kubeflow.IMAGE_APP_DIR
    copied = " ".join(_instructions("COPY"))
    packages = re.search(r"find_packages\(include=\[(.*?)\]\)", SETUP).group(1)
    for package in re.findall(r'"(\w+)"', packages):
        assert f"{package}/ {package}/" in copied, package
    for module in re.findall(r'"(\w+)"', re.search(r"py_modules=\[(.*?)\]", SETUP).group(1)):
        assert f"{module}.py" in copied, module
    assert "setup.py" in copied  # --setup_file for remote Beam workers
    config = kubeflow.cluster_config(configs.PipelineConfig(remote_pipeline_root="gs://bucket/root"), "vertex")
    assert config.remote_schema == f"{workdir}/schema/schema.pbtxt" and "schema/ schema/" in copied
    assert config.beam_setup_file == f"{workdir}/setup.py"
