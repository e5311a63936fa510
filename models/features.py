"""The active feature contract (models/contract.py) and the names every layer derives from it.

One contract is active per process: the file CONVEYOR_CONTRACT_PATH names (PipelineConfig's
`contract_path`; configs.load() activates the loaded config's), else the taxi's. Transform, Tuner
and Trainer get the path in their custom_config and activate it (`activate_from`), so a component
run on another machine reads the pipeline's contract. Everything that names a feature (schema
curation, preprocessing, the model, serving, slicing, monitoring) asks `active()`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Final, Mapping

from models.contract import Contract, load

DEFAULT_PATH: Final = Path(__file__).resolve().parent / "taxi.toml"
PATH_VARIABLE: Final = "CONVEYOR_CONTRACT_PATH"
CONFIG_KEY: Final = "contract_path"  # in Transform's, Tuner's and Trainer's custom_config

# What serving_default answers per example (models/model.py builds it, the serving runtime reads it).
PROBABILITY_KEY: Final = "probability"
CLASS_KEY: Final = "predicted_class"


@functools.lru_cache(maxsize=None)
def read(path: str) -> Contract:
    """The contract at `path`, parsed once per process."""
    return load(path)


def active_path() -> str:
    return os.environ.get(PATH_VARIABLE) or str(DEFAULT_PATH)


def active() -> Contract:
    """The process's contract."""
    return read(active_path())


def activate(path: Path | str) -> Contract:
    """Make the contract at `path` the process's (and its children's) active one."""
    contract = read(str(path))  # a bad file fails here, before it becomes active
    os.environ[PATH_VARIABLE] = str(path)
    return contract


def activate_from(custom_config: Mapping[str, Any] | None) -> Contract:
    """A component's contract: the one its custom_config names, else the active one."""
    path = (custom_config or {}).get(CONFIG_KEY)
    return activate(path) if path else active()


def is_default(contract: Contract) -> bool:
    """Is `contract` the taxi's (the one the shipped samples belong to)?"""
    return contract == read(str(DEFAULT_PATH))


def transformed_name(key: str) -> str:
    """Name of the transformed feature produced from raw feature `key`."""
    return f"{key}_xf"
