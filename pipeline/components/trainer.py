"""TFX's Trainer, recording on its Model every hyperparameter the model trained with.

`models.model.run_fn` resolves the hyperparameters (the defaults, the Tuner's newest choice, the
pipeline's overrides) and writes them to `hparams.json` in the model_run output; this executor
puts them on the Model artifact (pipeline/artifact_properties.py), so ML Metadata answers what
changed between two models without reading files.
"""
from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs

from pipeline.artifact_properties import HYPERPARAMETERS_PROPERTY

HPARAMS_FILE = "hparams.json"  # written by models.model.run_fn into model_run


class RecordingTrainerExecutor(trainer_executor.GenericExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        model_run = artifact_utils.get_single_uri(output_dict[standard_component_specs.MODEL_RUN_KEY])
        with fileio.open(os.path.join(model_run, HPARAMS_FILE)) as handle:
            hparams = json.load(handle)
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        model.set_string_custom_property(HYPERPARAMETERS_PROPERTY, json.dumps(hparams, sort_keys=True))


class Trainer(tfx.components.Trainer):
    """TFX's Trainer whose Model carries its hyperparameters in ML Metadata."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(RecordingTrainerExecutor)
