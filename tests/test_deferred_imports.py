"""`tfx.v1.extensions` is loaded on first use, not by every command (speedups/deferred_imports.py).

The cases on TFX run in a fresh interpreter: the deferral only acts before TFX is first imported.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import types

import pytest

from speedups import deferred_imports

CLOUD_CLIENT = "google.cloud.aiplatform"


def _run(script: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.splitlines()


def test_a_command_and_its_pipeline_import_tfx_without_the_cloud_clients():
    # What the installed `conveyor` command does first, then everything a local run builds on.
    lines = _run(
        "import sys\n"
        "import speedups\n"
        "speedups.for_commands()\n"
        "import conveyor.cli\n"
        "from tfx import v1 as tfx\n"
        "from pipeline import pipeline\n"
        f"print({CLOUD_CLIENT!r} in sys.modules)\n"
    )
    assert lines == ["False"], "importing the front door and the pipeline loaded the AI Platform client"


@pytest.mark.parametrize(
    "use",
    [
        "tfx.extensions.google_cloud_ai_platform.Trainer",
        "__import__('tfx.v1.extensions.google_cloud_ai_platform', fromlist=['Trainer']).Trainer",
    ],
)
def test_the_extensions_still_load_when_used(use: str):
    lines = _run(
        "import sys\n"
        "import speedups\n"
        "speedups.for_commands()\n"
        "from tfx import v1 as tfx\n"
        f"print({CLOUD_CLIENT!r} in sys.modules)\n"
        f"trainer = {use}\n"
        f"print({CLOUD_CLIENT!r} in sys.modules)\n"
        "from tfx.extensions.google_cloud_ai_platform.trainer import component\n"
        "print(trainer is component.Trainer, sorted(tfx.extensions.__all__))\n"
    )
    assert lines == ["False", "True", "True ['google_cloud_ai_platform', 'google_cloud_big_query']"]


def test_a_deferred_package_loads_once_when_threads_first_use_it_together(tmp_path, monkeypatch):
    # A package that takes a while to load and, while loading, imports its own submodule.
    package = tmp_path / "slow_package"
    package.mkdir()
    (tmp_path / "load_count.py").write_text("loads = 0\n")
    (package / "part.py").write_text("WHAT = 'part'\n")
    (package / "__init__.py").write_text(
        "import time\nimport load_count\nload_count.loads += 1\ntime.sleep(0.3)\n"
        "from slow_package import part\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("slow_package", "slow_package.part", "load_count"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = deferred_imports.defer("slow_package", str(package / "__init__.py"))
    import load_count

    assert load_count.loads == 0, "the stand-in must not load its package before first use"
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(module.VALUE)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [42, 42, 42, 42]
    assert load_count.loads == 1
    assert module.part.WHAT == "part" and sys.modules["slow_package"] is module
    assert type(module) is types.ModuleType
