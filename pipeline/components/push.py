"""Crash-safe pushes: Pusher stages, Publish makes the version visible (see pipeline/versions.py).

TFX records a component's outputs in ML Metadata only after its executor returns, so no single
component can both write the final version folder and be sure the push is recorded: killed in
between, a complete version would serve with no record. Here Pusher (TFX's, with a staging
executor) copies the blessed model into `<serving_root>/.staging/<version>/` and returns; the
PushedModel it outputs names the final destination. Publish takes that PushedModel as its input, so
it runs only once the push is recorded, and renames the staged folder into place. The push record it
writes also carries the facts the CT controller judges the version against, wherever it runs (a
cluster tick reads no pipeline metadata): the Evaluator's overall metrics of the model and the
statistics DataGate validated for the run's span (the newest span of the model's window).

A kill before Pusher's record leaves an unrecorded staged folder (invisible; the re-run stages a new
version, `conveyor models --clean` removes the leftover). A kill between the record and Publish
leaves a recorded push not yet visible: the re-run finds Pusher cached and Publish completes it, so
there is never a second push of the same model.
"""
# No `from __future__ import annotations`: TFX reads the real type hints of Publish.
import json
import os
from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from pipeline import evaluation as evaluation_lib
from pipeline import model_card as card_lib
from pipeline import versions
from pipeline.artifact_properties import MODEL_ID_PROPERTY, STAGED_PATH_PROPERTY
from pipeline.components.model_card import ModelCardArtifact


class StagingPusherExecutor(pusher_executor.Executor):
    """TFX's Pusher (blessing checks, PushedModel properties) writing to the staging area only."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        root = destination.filesystem.base_directory
        version = versions.new_version(root)
        staged = versions.stage(self.GetModelPath(input_dict), root, version)
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        pushed.set_int_custom_property(MODEL_ID_PROPERTY, model.id)
        pushed.set_string_custom_property(STAGED_PATH_PROPERTY, staged)
        self._MarkPushed(pushed, pushed_destination=os.path.join(root, version), pushed_version=version)


class StagingPusher(tfx.components.Pusher):
    """Pusher whose push is published by Publish (it never writes a visible version itself)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(StagingPusherExecutor)


@tfx.dsl.components.component
def Publish(
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    validated_statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    model_card: tfx.dsl.components.InputArtifact[ModelCardArtifact],
    rollout: tfx.dsl.components.Parameter[str] = "direct",
) -> None:
    """Rename the recorded, staged push into the serving root, its model card named after the
    version (nothing to do when not pushed), under the rollout policy `rollout` (pipeline/rollouts.py:
    shadow and canary:P write the rollout state first)."""
    if pushed_model.get_int_custom_property("pushed") != 1:
        return
    destination = pushed_model.get_string_custom_property("pushed_destination")
    root, version = os.path.dirname(destination), pushed_model.get_string_custom_property("pushed_version")
    overall = evaluation_lib.load_tfma_result(evaluation.uri).metrics.get(evaluation_lib.OVERALL, {})
    if not versions.is_ready(root, version):
        card = card_lib.finalize(json.loads(io_utils.read_string_file(os.path.join(model_card.uri, versions.CARD_DIR, versions.CARD_JSON))), version)
        versions.stage_file(root, version, os.path.join(versions.CARD_DIR, versions.CARD_JSON), card_lib.dumps(card).encode())
        versions.stage_file(root, version, os.path.join(versions.CARD_DIR, versions.CARD_HTML), card_lib.render(card).encode())
    versions.publish(
        root,
        version,
        {
            "pushed_model_id": pushed_model.id,
            MODEL_ID_PROPERTY: pushed_model.get_int_custom_property(MODEL_ID_PROPERTY),
            versions.OFFLINE_METRICS: overall,
            versions.TRAINING_STATISTICS: versions.training_statistics_file(validated_statistics.uri),
        },
        rollout,
    )
