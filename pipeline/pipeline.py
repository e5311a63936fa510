"""create_pipeline(): the one wiring of Conveyor's TFX DAG, shared by every runner.

  CsvExampleGen (newest span) -> StatisticsGen -> ExampleValidator (vs ImportSchemaGen)
    -> DataGate (blocks a span with anomalies, else publishes it as validated examples)
    -> span window (rolling range of validated spans)
    -> Transform -> Trainer -> Evaluator (vs the previous blessed model) -> Pusher (blessed only)

`config.history` picks how the span window and the baseline reach earlier runs: TFX resolvers over
MLMD ("mlmd", local) or components over the validated-span index and the serving root ("stores",
Kubeflow v2 / Vertex, whose compiler has no custom resolvers). Both give the same DAG: same node
ids, same edges.
"""
from __future__ import annotations

from typing import Any

from tfx import v1 as tfx
from tfx.proto import range_config_pb2

from pipeline import evaluation, user_code
from pipeline.components.baseline_model import baseline_resolver
from pipeline.components.data_gate import DataGate
from pipeline.components.pushed_baseline import OptionalBaselineEvaluator, PreviousPushedModel
from pipeline.components.span_window import SpanWindow
from pipeline.configs import PipelineConfig

SPAN_PATTERN = "span-{SPAN}/*.csv"


def _example_gen(config: PipelineConfig) -> tfx.components.CsvExampleGen:
    range_config = None
    if config.span is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(
                start_span_number=config.span, end_span_number=config.span
            )
        )
    return tfx.components.CsvExampleGen(
        input_base=config.spans_root_uri,
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


def _span_window(config: PipelineConfig, data_gate: Any) -> Any:
    """Newest `window_spans` span numbers among the spans that ever passed the gate (any run)."""
    if config.history == "stores":
        return SpanWindow(
            validated_examples=data_gate.outputs["validated_examples"],
            index_uri=config.validated_spans_uri,
            window_spans=config.window_spans,
        ).with_id("span_window")
    span_window = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
        config={
            "range_config": range_config_pb2.RangeConfig(
                rolling_range=range_config_pb2.RollingRange(num_spans=config.window_spans)
            )
        },
        examples=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples,
            producer_component_id=data_gate.id,
            output_key="validated_examples",
        ),
    ).with_id("span_window")
    # A plain Channel carries no run dependency: order the window after this run's gate.
    span_window.add_upstream_node(data_gate)
    return span_window


def create_components(config: PipelineConfig) -> list[Any]:
    example_gen = _example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_uri)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    data_gate = DataGate(
        examples=example_gen.outputs["examples"], anomalies=example_validator.outputs["anomalies"]
    )
    schema = schema_gen.outputs["schema"]

    span_window = _span_window(config, data_gate)
    examples = span_window.outputs["examples"]

    transform = tfx.components.Transform(examples=examples, schema=schema, **user_code.transform_args(config))
    trainer = tfx.components.Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        **user_code.trainer_args(config),
    )
    if config.history == "mlmd":
        baseline_model = baseline_resolver(trainer.outputs["model"])
        evaluator_class = tfx.components.Evaluator
    else:
        baseline_model = PreviousPushedModel(
            candidate=trainer.outputs["model"], serving_root=config.serving_root_uri
        ).with_id("baseline_model")
        evaluator_class = OptionalBaselineEvaluator
    evaluator = evaluator_class(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_model.outputs["model"],
        eval_config=evaluation.eval_config(config),
    ).with_id("Evaluator")
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_root_uri)
        ),
    )
    return [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        data_gate,
        span_window,
        transform,
        trainer,
        baseline_model,
        evaluator,
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
        pipeline_root=config.pipeline_root_uri,
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_args(),
    )
