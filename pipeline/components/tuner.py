"""TFX's Tuner, recording what the search found in ML Metadata and keeping its trials for TensorBoard.

TFX's executor runs the search (models/tuning.py `tuner_fn`) in a temporary folder and writes
`best_hyperparameters.txt` and `tuner_results.json`. This one also sets on the best_hyperparameters
artifact the chosen values, the objective, the best and the default's score, the trials run and
what ended the search (pipeline/artifact_properties.py), so readers of ML Metadata need no files;
and copies each trial's TensorBoard logs, which carry its hyperparameters for the HParams
dashboard, into `tuner_results/tensorboard/` before the temporary folder goes.
"""
from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from pipeline.artifact_properties import (
    BEST_SCORE_PROPERTY,
    DEFAULT_SCORE_PROPERTY,
    ENDED_BY_PROPERTY,
    MAX_TRIALS_PROPERTY,
    OBJECTIVE_PROPERTY,
    TRIALS_PROPERTY,
    TUNED_VALUES_PROPERTY,
    TUNER_TENSORBOARD_DIR,
)


class RecordingTunerExecutor(tuner_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        from models import tuning

        if tuner_executor.get_tune_args(exec_properties):
            raise ValueError("TuneArgs is not supported by this Tuner's Executor.")
        working_dir = self._get_tmp_dir()
        tuner = tuner_executor.search(input_dict, exec_properties, working_dir, print_tuning_summary=False)
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        oracle = tuner.oracle
        completed = [t for t in oracle.trials.values() if t.score is not None]
        best = artifact_utils.get_single_instance(output_dict[standard_component_specs.BEST_HYPERPARAMETERS_KEY])
        best.set_string_custom_property(TUNED_VALUES_PROPERTY, json.dumps(oracle.get_best_trials(1)[0].hyperparameters.values, sort_keys=True))
        best.set_string_custom_property(OBJECTIVE_PROPERTY, oracle.objective.name)
        best.set_float_custom_property(BEST_SCORE_PROPERTY, float(oracle.get_best_trials(1)[0].score))
        default = oracle.trials[oracle.start_order[0]]
        if default.score is not None:
            best.set_float_custom_property(DEFAULT_SCORE_PROPERTY, float(default.score))
        best.set_int_custom_property(TRIALS_PROPERTY, len(completed))
        best.set_int_custom_property(MAX_TRIALS_PROPERTY, int(oracle.max_trials))
        best.set_string_custom_property(ENDED_BY_PROPERTY, getattr(oracle, "ended_by", "trials"))
        results = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
        io_utils.copy_dir(os.path.join(working_dir, tuning.TENSORBOARD_DIR), os.path.join(results, TUNER_TENSORBOARD_DIR))


class Tuner(tfx.components.Tuner):
    """TFX's Tuner whose best_hyperparameters say in ML Metadata what the search found."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(RecordingTunerExecutor)
