"""`tfx.v1.extensions` is loaded on first use, not by every command (conveyor/deferred_imports.py).

Each case runs in a fresh interpreter: the deferral only acts before TFX is first imported.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

CLOUD_CLIENT = "google.cloud.aiplatform"


def _run(script: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.splitlines()


def test_a_command_and_its_pipeline_import_tfx_without_the_cloud_clients():
    # What the installed `conveyor` script imports first, then everything a local run builds on.
    lines = _run(
        "import sys\n"
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
        "import conveyor\n"
        "from tfx import v1 as tfx\n"
        f"print({CLOUD_CLIENT!r} in sys.modules)\n"
        f"trainer = {use}\n"
        f"print({CLOUD_CLIENT!r} in sys.modules)\n"
        "from tfx.extensions.google_cloud_ai_platform.trainer import component\n"
        "print(trainer is component.Trainer, sorted(tfx.extensions.__all__))\n"
    )
    assert lines == ["False", "True", "True ['google_cloud_ai_platform', 'google_cloud_big_query']"]
