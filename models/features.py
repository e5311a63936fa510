"""The active feature contract (models/contract.py) and the names every layer derives from it.

One contract is active per process: the file CONVEYOR_CONTRACT_PATH names (PipelineConfig's
`contract_path`; configs.load() activates the loaded config's), else the taxi's. Transform, Tuner
and Trainer get the file's text and digest in their custom_config (`config_entries`) and activate
it (`activate_from`), so a component run on another machine, where the file is not, reads the
pipeline's contract. Everything that names a feature (schema
curation, preprocessing, the model, serving, slicing, monitoring) asks `active()`.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Final, Mapping

from models.contract import Contract, load

DEFAULT_PATH: Final = Path(__file__).resolve().parent / "taxi.toml"
PATH_VARIABLE: Final = "CONVEYOR_CONTRACT_PATH"
TEXT_KEY: Final = "contract_toml"  # in Transform's, Tuner's and Trainer's custom_config: the file's text
VERSION_KEY: Final = "contract_version"  # ... and its digest (an edited contract is never served from the cache)

# What serving_default answers per example (models/model.py builds it, the serving runtime reads it):
# a binary model its positive class's probability, a multi-class one a probability per class (in
# the contract's order); both the predicted class's index.
PROBABILITY_KEY: Final = "probability"
PROBABILITIES_KEY: Final = "probabilities"
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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def config_entries(path: Path | str) -> dict[str, str]:
    """The custom_config entries that carry the contract at `path` into a component."""
    data = Path(path).read_bytes()
    return {TEXT_KEY: data.decode(), VERSION_KEY: _digest(data)}


def activate_from(custom_config: Mapping[str, Any] | None) -> Contract:
    """A component's contract: the one its custom_config carries (kept active when the active file
    holds the same text, else written to a file of its own under the temp folder), else the active one."""
    config = custom_config or {}
    text, version = config.get(TEXT_KEY), config.get(VERSION_KEY)
    if not text:
        return active()
    current = Path(active_path())
    if current.is_file() and _digest(current.read_bytes()) == version:
        return active()
    path = Path(tempfile.gettempdir()) / f"conveyor-contract-{version}.toml"
    if not path.is_file():
        staged = path.with_suffix(f".{os.getpid()}.tmp")
        staged.write_text(text)
        os.replace(staged, path)
    return activate(path)


def is_default(contract: Contract) -> bool:
    """Is `contract` the taxi's (the one the shipped samples belong to)?"""
    return contract == read(str(DEFAULT_PATH))


def transformed_name(key: str) -> str:
    """Name of the transformed feature produced from raw feature `key`."""
    return f"{key}_xf"
