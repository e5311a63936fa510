"""The official TFX taxi template, made from the installed wheel, as the benchmarks' yardstick.

`tfx template copy --model=taxi` writes the template; its pipeline.py ships with every component
but ExampleGen commented out (steps 5 and 6 of its tutorial), so `create` enables them: CsvExampleGen,
StatisticsGen, SchemaGen, Transform, Trainer (1000 steps), the latest-blessed-model resolver,
Evaluator and Pusher, on its own 15,002 trips. Nothing else of it is changed. The copy lives in a
scratch folder the caller owns; none of it is part of Conveyor.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

NAME = "taxi_template"
DATA = "data/data.csv"
# "  # TODO(step 5): Uncomment here to add StatisticsGen to the pipeline.\n  # components.append("
_DISABLED = re.compile(r"(\n[ ]*)# TODO\(step [56]\): Uncomment here to add \w+ to the pipeline\.\n[ ]*# (components\.append)")
ENABLED_COMPONENTS = 7  # StatisticsGen, SchemaGen, Transform, Trainer, resolver, Evaluator, Pusher


def create(parent: Path) -> Path:
    """Copy the template into `parent`/taxi_template and enable its components; return the folder."""
    destination = Path(parent) / NAME
    tfx_cli = Path(sys.executable).with_name("tfx")
    subprocess.run(
        [str(tfx_cli), "template", "copy", "--model=taxi", f"--pipeline_name={NAME}", f"--destination_path={destination}"],
        check=True,
        capture_output=True,
    )
    pipeline_py = destination / "pipeline" / "pipeline.py"
    text, enabled = _DISABLED.subn(r"\1\2", pipeline_py.read_text())
    if enabled != ENABLED_COMPONENTS:
        raise RuntimeError(f"{pipeline_py}: expected {ENABLED_COMPONENTS} disabled components, found {enabled}")
    pipeline_py.write_text(text)
    return destination


def evaluation_uri(template: Path) -> Path:
    """The Evaluator output of the template's (only) run."""
    found = sorted((template / "tfx_pipeline_output" / NAME / "Evaluator" / "evaluation").iterdir())
    if len(found) != 1:
        raise RuntimeError(f"expected one template evaluation, found {len(found)}")
    return found[0]
