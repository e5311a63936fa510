"""TFX's Tuner, recording what the search found in ML Metadata and keeping its trials for TensorBoard.

TFX's executor runs the search (models/tuning.py `tuner_fn`) in a temporary folder and writes
`best_hyperparameters.txt` and `tuner_results.json`. This one also sets on the best_hyperparameters
artifact the chosen values, the objective, the best and the default's score, the trials run and
what ended the search (pipeline/artifact_properties.py), so readers of ML Metadata need no files;
and copies each trial's TensorBoard logs, which carry its hyperparameters for the HParams
dashboard, into `tuner_results/tensorboard/` before the temporary folder goes. In the stores form
(Kubeflow, Vertex), whose runs have no resolver to find it, it also records the search in the
tuning index under the pipeline root (its custom_config's `index_uri`), which
LatestTunedHyperparameters reads (pipeline/components/tuned_hyperparameters.py).
"""
from __future__ import annotations

import json
import os
import time
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
    INDEX_URI_KEY,
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
        best = artifact_utils.get_single_instance(output_dict[standard_component_specs.BEST_HYPERPARAMETERS_KEY])
        properties = search_record(tuner.oracle)
        set_properties(best, properties)
        results = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
        io_utils.copy_dir(os.path.join(working_dir, tuning.TENSORBOARD_DIR), os.path.join(results, TUNER_TENSORBOARD_DIR))
        index_uri = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}").get(INDEX_URI_KEY)
        if index_uri:
            record(index_uri, best.uri, properties)


def search_record(oracle: Any) -> dict[str, str | int | float]:
    """What the search found, as the properties of its best_hyperparameters."""
    best = oracle.get_best_trials(1)[0]
    default = oracle.trials[oracle.start_order[0]]  # the first trial: the defaults (models/tuning.py)
    found: dict[str, str | int | float] = {
        TUNED_VALUES_PROPERTY: json.dumps(best.hyperparameters.values, sort_keys=True),
        OBJECTIVE_PROPERTY: oracle.objective.name,
        BEST_SCORE_PROPERTY: float(best.score),
        TRIALS_PROPERTY: sum(1 for t in oracle.trials.values() if t.score is not None),
        MAX_TRIALS_PROPERTY: int(oracle.max_trials),
        ENDED_BY_PROPERTY: getattr(oracle, "ended_by", "trials"),
    }
    if default.score is not None:
        found[DEFAULT_SCORE_PROPERTY] = float(default.score)
    return found


def set_properties(artifact: types.Artifact, properties: dict[str, str | int | float]) -> None:
    """Set each property on `artifact` with the setter of its type."""
    for name, value in properties.items():
        if isinstance(value, str):
            artifact.set_string_custom_property(name, value)
        elif isinstance(value, int):
            artifact.set_int_custom_property(name, value)
        else:
            artifact.set_float_custom_property(name, value)


def record(index_uri: str, uri: str, properties: dict[str, str | int | float]) -> None:
    """Add a search to the tuning index: `<index_uri>/<milliseconds>.json` holding the URI of its
    best_hyperparameters and their properties."""
    entry = {"uri": uri, "properties": properties}
    io_utils.write_string_file(os.path.join(index_uri, f"{time.time_ns() // 1_000_000}.json"), json.dumps(entry, sort_keys=True))


class Tuner(tfx.components.Tuner):
    """TFX's Tuner whose best_hyperparameters say in ML Metadata what the search found."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(RecordingTunerExecutor)
