"""How Transform and Trainer reach the model code (see settings.USER_CODE_FORMS).

Conveyor is installed (editable by `make setup`, into the container image), so the components name
functions by module path; a fingerprint of the code is put into their custom_config, so changed
code changes their execution properties and is never served from the cache of an older version.
The "module_file" form has TFX package `models/*.py` into a wheel per run instead. Either way the
components' custom_config names the pipeline's feature contract and a digest of its content
(PipelineConfig.contract_config; models/features.py activates it inside the component, and an
edited contract is never served from the cache).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.configs import PipelineConfig

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.model.run_fn"
TUNER_FN = "models.tuning.tuner_fn"
CODE_VERSION_KEY = "code_version"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def fingerprint(root: Path = MODELS_DIR) -> str:
    """sha256 (first 16 hex digits) over the names and contents of the model package's .py files."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def transform_args(config: PipelineConfig) -> dict[str, Any]:
    if config.user_code == "module_file":
        return {"module_file": str(config.preprocessing_module), "custom_config": config.contract_config()}
    return {"preprocessing_fn": PREPROCESSING_FN, "custom_config": {CODE_VERSION_KEY: fingerprint(), **config.contract_config()}}


def trainer_args(config: PipelineConfig) -> dict[str, Any]:
    if config.user_code == "module_file":
        return {"module_file": str(config.model_module), "custom_config": config.trainer_config()}
    return {"run_fn": RUN_FN, "custom_config": {**config.trainer_config(), CODE_VERSION_KEY: fingerprint()}}


def tuner_args(config: PipelineConfig) -> dict[str, Any]:
    if config.user_code == "module_file":
        return {"module_file": str(config.model_module.parent / "tuning.py"), "custom_config": config.tuner_config()}
    return {"tuner_fn": TUNER_FN, "custom_config": {**config.tuner_config(), CODE_VERSION_KEY: fingerprint()}}
