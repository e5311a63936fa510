"""The Evaluator's baseline where the orchestrator compiles no custom resolver (history="stores").

PreviousPushedModel outputs a copy of the version serving now (pipeline/versions.py
`serving_version`: the newest published version, or the rollback in force). Only models that the
Evaluator and InfraCheck passed are published, so a refused model is never the baseline. The
candidate model is its input only to order it after Trainer and to key its cache: the baseline for
a candidate is chosen once, before that candidate can be pushed, so an unchanged re-run is served
from the cache and stays fully cached (what ServingModelStrategy achieves with MLMD).

Before the first push the output is an empty Model; the GatedEvaluator treats that as no
baseline, as the Evaluator treats an empty resolver output (change thresholds are skipped).
"""
# No `from __future__ import annotations`: TFX reads the real type hints of PreviousPushedModel.
import os

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.utils import io_utils, path_utils

from pipeline import versions
from pipeline.artifact_properties import PUSHED_DESTINATION_PROPERTY, PUSHED_VERSION_PROPERTY


@tfx.dsl.components.component
def PreviousPushedModel(
    candidate: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    serving_root: tfx.dsl.components.Parameter[str],
) -> None:
    del candidate  # an input for ordering and the cache key only (see the module docstring)
    version = versions.serving_version(serving_root)
    if version is None:
        return
    source = os.path.join(serving_root, version)
    io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
    model.set_string_custom_property(PUSHED_VERSION_PROPERTY, version)
    model.set_string_custom_property(PUSHED_DESTINATION_PROPERTY, source)


def has_model(artifact: types.Artifact) -> bool:
    """Whether a Model artifact holds a serving SavedModel (PreviousPushedModel's may be empty)."""
    return fileio.exists(os.path.join(path_utils.serving_model_dir(artifact.uri), versions.READY_FILE))
