"""A pipeline project: a folder `conveyor init` made, marked by its `conveyor.toml`.

    DIR/conveyor.toml               this marker: [project] name
    DIR/contract.toml               the feature contract (models/contract.py)
    DIR/spans/span-N/data.csv       upstream spans
    DIR/schema/schema.pbtxt         the curated schema and completeness floors (schema/derive.py)
    DIR/schema/completeness.json
    DIR/outputs/                    the home: runs, metadata, served models, request log, labels

The project in use is the folder $CONVEYOR_PROJECT names (`--project DIR` sets it), else the
current folder when it holds a conveyor.toml. Its paths are defaults between the built-in ones and
the CONVEYOR_* variables and flags (configs.load), so an explicit setting still wins; outside a
project (the taxi checkout) nothing changes.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pipeline.settings import ENV_PREFIX

MARKER: Final = "conveyor.toml"
VARIABLE: Final = ENV_PREFIX + "PROJECT"
CONTRACT: Final = "contract.toml"
SPANS: Final = "spans"
SCHEMA: Final = "schema/schema.pbtxt"
COMPLETENESS: Final = "schema/completeness.json"
HOME: Final = "outputs"
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a model name in a URL path, and a pipeline name


@dataclass(frozen=True)
class Project:
    root: Path
    name: str

    def settings(self) -> dict[str, Any]:
        """The PipelineConfig fields the project sets."""
        return {
            "home": self.root / HOME,
            "spans_root": self.root / SPANS,
            "schema_path": self.root / SCHEMA,
            "completeness_path": self.root / COMPLETENESS,
            "contract_path": self.root / CONTRACT,
            "pipeline_name": f"conveyor-{self.name}",
        }


def marker_text(name: str) -> str:
    """The content of a new project's conveyor.toml."""
    return (
        "# A Conveyor pipeline project (docs/your-data.md). Inside this folder, or with --project or\n"
        f"# {VARIABLE} naming it, every conveyor command uses its {CONTRACT}, {SPANS}/, schema/ and {HOME}/.\n"
        "[project]\n"
        f'name = "{name}"  # the pipeline is conveyor-{name} in ML Metadata\n'
    )


def read(root: Path, named: str) -> Project:
    """The project at `root`; a ValueError `<named>: <what was expected>` if it is none."""
    marker = root / MARKER
    if not marker.is_file():
        raise ValueError(f"{named}: not a Conveyor project (no {MARKER} in it; `conveyor init` makes one)")
    try:
        data = tomllib.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{marker}: expected a readable TOML file ({exc})") from None
    name = data.get("project", {}).get("name") if isinstance(data.get("project"), dict) else None
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"{marker}: project.name: expected a name of letters, digits, '_', '.', '-', got {name!r}")
    return Project(root.resolve(), name)


def current() -> Project | None:
    """The project in use: $CONVEYOR_PROJECT's, else the current folder's, else None."""
    named = os.environ.get(VARIABLE)
    if named:
        return read(Path(named), f"{VARIABLE}={named}")
    if (Path.cwd() / MARKER).is_file():
        return read(Path.cwd(), f"the current folder {Path.cwd()}")
    return None


def current_settings() -> dict[str, Any]:
    """The PipelineConfig fields the project in use sets ({} outside a project)."""
    found = current()
    return found.settings() if found else {}
