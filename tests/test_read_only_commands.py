"""Read-only commands answer from ML Metadata and files: `conveyor models`, `lineage`, `runs`, `runs compare` and `card` import
no TensorFlow, TFMA, Beam nor TFX's fileio (which imports TensorFlow), and create nothing.

Each runs the installed `conveyor` script in its own interpreter, which reports the modules it
loaded when it exits: a deterministic check of what makes these commands take seconds.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving_helpers import CONVEYOR

HEAVY = ("tensorflow", "tensorflow_model_analysis", "apache_beam", "tfx.dsl.io.fileio", "keras")

# The installed script, run as __main__ with an exit hook writing sorted(sys.modules) to argv[1].
_REPORTING = (
    "import atexit, json, runpy, sys\n"
    "report = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(report, 'w').write(json.dumps(sorted(sys.modules))))\n"
    "sys.argv[0] = sys.argv[1]; del sys.argv[1]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def _modules_loaded_by(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _REPORTING, str(report), str(CONVEYOR), *args], capture_output=True, text=True, timeout=120
    )
    return done, set(json.loads(report.read_text()))


@pytest.mark.parametrize(("command", "reads_metadata"), [(["models"], True), (["lineage"], True), (["runs"], True),
                                                     (["runs", "compare", "1", "1", "--html", "page.html"], True), (["card"], False)],
                         ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_the_command_imports_no_tensorflow(small_run, tmp_path, command, reads_metadata):
    config, summary = small_run
    command = [str(tmp_path / arg) if arg.endswith(".html") else arg for arg in command]
    done, loaded = _modules_loaded_by(tmp_path, *command, "--home", str(config.home))
    assert done.returncode == 0, done.stderr
    assert summary.pushed_path.rsplit("/", 1)[-1] in done.stdout  # it did its work
    assert ("ml_metadata" in loaded) == reads_metadata  # read from ML Metadata (the card: from the version's folder)...
    assert not [name for name in HEAVY if name in loaded]  # ...without the heavy libraries


def test_lineage_of_a_home_without_metadata_says_so_and_creates_none(small_run, tmp_path):
    config, _ = small_run
    home = tmp_path / "home"
    shutil.copytree(config.serving_root, home / config.serving_root.name)  # pushed versions, no MLMD
    done = subprocess.run([str(CONVEYOR), "lineage", "--home", str(home)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == f"conveyor lineage: no ML Metadata at {home / 'metadata.sqlite'}: no run of this home was recorded\n"
    assert not (home / "metadata.sqlite").exists()
