"""create_pipeline(): the one wiring of Conveyor's TFX DAG, shared by every runner.

  CsvExampleGen (newest span) -> StatisticsGen -> ExampleValidator (vs ImportSchemaGen)
    -> DataGate (blocks a span with anomalies or, by policy, drift vs the previous validated span;
                 else publishes it as validated examples and statistics)
    -> span window (validated spans N-K+1..N, one artifact per span)
    -> Transform -> Trainer -> Evaluator (vs the previous blessed model)
    -> InfraCheck (the candidate answers real eval examples through the serving code)
    -> Pusher (blessed by both only)
"""
from __future__ import annotations

import json
from typing import Any

from tfx import v1 as tfx
from tfx.proto import range_config_pb2

from pipeline import evaluation
from pipeline.components.baseline_model import baseline_resolver
from pipeline.components.data_gate import DataGate
from pipeline.components.infra_check import InfraCheck
from pipeline.components.span_resolvers import previous_span_resolver, span_window_resolver
from pipeline.configs import PipelineConfig

SPAN_PATTERN = "span-{SPAN}/*.csv"
DATA_GATE_ID = "DataGate"


def _example_gen(config: PipelineConfig) -> tfx.components.CsvExampleGen:
    range_config = None
    if config.span is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(
                start_span_number=config.span, end_span_number=config.span
            )
        )
    return tfx.components.CsvExampleGen(
        input_base=str(config.spans_root),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern=SPAN_PATTERN)]),
        output_config=tfx.proto.Output(
            split_config=tfx.proto.SplitConfig(
                splits=[
                    tfx.proto.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
                    tfx.proto.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
                ]
            )
        ),
        range_config=range_config,
    )


def create_components(config: PipelineConfig) -> list[Any]:
    example_gen = _example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(config.schema_path))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    schema = schema_gen.outputs["schema"]
    # Drift baseline: the validated statistics of the newest span older than this one.
    previous_statistics = previous_span_resolver(
        "previous_statistics",
        candidates=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id=DATA_GATE_ID,
            output_key="validated_statistics",
        ),
        current=example_gen.outputs["examples"],
    )
    data_gate = DataGate(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=schema,
        previous_statistics=previous_statistics.outputs["candidates"],
        drift_thresholds=json.dumps(dict(config.drift_thresholds), sort_keys=True),
        completeness_drop=config.completeness_drop,
        drift_policy=config.drift_policy,
        serving_statistics_path=str(config.serving_statistics_path or ""),
    ).with_id(DATA_GATE_ID)

    # Every span that ever passed the gate in this pipeline (not only this run's), newest K kept.
    span_window = span_window_resolver(
        config.window_spans,
        candidates=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples,
            producer_component_id=DATA_GATE_ID,
            output_key="validated_examples",
        ),
        current=example_gen.outputs["examples"],
    )
    # A plain Channel carries no run dependency: order the window after this run's gate.
    span_window.add_upstream_node(data_gate)
    examples = span_window.outputs["candidates"]

    transform = tfx.components.Transform(
        examples=examples,
        schema=schema,
        module_file=str(config.preprocessing_module),
    )
    trainer = tfx.components.Trainer(
        module_file=str(config.model_module),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config=config.trainer_config(),
    )
    baseline_model = baseline_resolver(trainer.outputs["model"])
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_model.outputs["model"],
        eval_config=evaluation.eval_config(config),
    )
    infra_check = InfraCheck(
        model=trainer.outputs["model"],
        examples=data_gate.outputs["validated_examples"],
        schema=schema,
        sample_size=config.infra_check_examples,
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_check.outputs["infra_blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(config.serving_root))
        ),
    )
    return [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        previous_statistics,
        data_gate,
        span_window,
        transform,
        trainer,
        baseline_model,
        evaluator,
        infra_check,
        pusher,
    ]


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config: Any | None = None,
    beam_pipeline_args: list[str] | None = None,
) -> tfx.dsl.Pipeline:
    """The Conveyor pipeline for `config`; runners supply metadata and Beam settings."""
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(config.pipeline_root),
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_args(),
    )
