"""The Evaluator, with Conveyor's blessing rule applied to what TFMA found (pipeline/evaluation.py).

TFMA computes the metrics of the candidate and the baseline per slice and checks the thresholds
of `evaluation.eval_config`. TFMA cannot know that a metric is undefined on the data (AUC with one
class present reads 0.0) or that a slice is too small to judge, so its validation alone would
refuse for those reasons. This executor runs TFX's Evaluator, then lets `evaluation.judge` decide
which of TFMA's failures count and the fairness gate (pipeline/fairness.py) add its refusals, writes the verdict with every reason (`verdict.json` in the
evaluation) and both models' metrics per slice (`slice_metrics.json`: read back without TFMA), and
sets the blessing from it. An empty baseline Model (history="stores" before the
first push) means no baseline, as an empty resolver output does.
"""
from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.utils import io_utils

from pipeline import evaluation, fairness
from pipeline.components.pushed_baseline import has_model

GATE_KEY = "blessing_gate"


class GatedEvaluatorExecutor(evaluator_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key) and not has_model(input_dict[key][0]):
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)
        output = artifact_utils.get_single_uri(output_dict[standard_component_specs.EVALUATION_KEY])
        result = evaluation.load_tfma_result(output)
        verdict = fairness.judge(result, evaluation.Gate(**json.loads(exec_properties[GATE_KEY])))
        evaluation.write_record(output, result, verdict)
        blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
        for name in (constants.BLESSED_FILE_NAME, constants.NOT_BLESSED_FILE_NAME):  # TFMA's verdict
            _remove(os.path.join(blessing.uri, name))
        io_utils.write_string_file(
            os.path.join(blessing.uri, constants.BLESSED_FILE_NAME if verdict.blessed else constants.NOT_BLESSED_FILE_NAME), ""
        )
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.BLESSED_VALUE if verdict.blessed else constants.NOT_BLESSED_VALUE
        )


def _remove(path: str) -> None:
    from tfx.dsl.io import fileio

    if fileio.exists(path):
        fileio.remove(path)


class GatedEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS, GATE_KEY: component_spec.ExecutionParameter(type=str)}  # noqa: RUF012 (TFX's spec shape)


class GatedEvaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator (same inputs, outputs and TFMA config) whose blessing follows `evaluation.judge`."""

    SPEC_CLASS = GatedEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(GatedEvaluatorExecutor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, baseline_model: types.BaseChannel, eval_config: Any, gate: evaluation.Gate):
        super().__init__(
            spec=GatedEvaluatorSpec(
                examples=examples,
                model=model,
                baseline_model=baseline_model,
                eval_config=eval_config,
                example_splits="null",
                fairness_indicator_thresholds="null",
                **{GATE_KEY: json.dumps(gate.__dict__, sort_keys=True)},
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            )
        )
