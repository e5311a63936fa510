"""The Evaluator's baseline where the orchestrator compiles no custom resolver (history="stores").

PreviousPushedModel outputs a copy of the newest model version under the serving root. Every
pushed model was blessed, so this is the latest blessed model that reached serving. The candidate
model is its input only to order it after Trainer and to key its cache: the baseline for a
candidate is chosen once, before that candidate can be pushed, so an unchanged re-run is served
from the cache and stays fully cached (what PreviousBlessedModelStrategy achieves with MLMD).

Before the first push the output is an empty Model; OptionalBaselineEvaluator treats that as no
baseline, as the Evaluator treats an empty resolver output (change thresholds are skipped).
"""
# No `from __future__ import annotations`: TFX reads the real type hints of PreviousPushedModel.
import os
from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx.utils import io_utils, path_utils

from pipeline import versions

PUSHED_VERSION_PROPERTY = "pushed_version"
PUSHED_DESTINATION_PROPERTY = "pushed_destination"


@tfx.dsl.components.component
def PreviousPushedModel(
    candidate: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    serving_root: tfx.dsl.components.Parameter[str],
) -> None:
    del candidate  # an input for ordering and the cache key only (see the module docstring)
    version = versions.latest_version(serving_root)
    if version is None:
        return
    source = os.path.join(serving_root, version)
    io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
    model.set_string_custom_property(PUSHED_VERSION_PROPERTY, version)
    model.set_string_custom_property(PUSHED_DESTINATION_PROPERTY, source)


def has_model(artifact: types.Artifact) -> bool:
    """Whether a Model artifact holds a serving SavedModel (PreviousPushedModel's may be empty)."""
    return fileio.exists(os.path.join(path_utils.serving_model_dir(artifact.uri), versions.READY_FILE))


class OptionalBaselineExecutor(evaluator_executor.Executor):
    """The Evaluator's executor, given no baseline when the baseline artifact holds no model."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key) and not has_model(input_dict[key][0]):
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)


class OptionalBaselineEvaluator(tfx.components.Evaluator):
    """TFX's Evaluator, except that an empty baseline Model (nothing pushed yet) means no baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(OptionalBaselineExecutor)
