"""create_pipeline(): the one wiring of Conveyor's TFX DAG, shared by every runner.

  CsvExampleGen (this run's span, upstream or feedback) -> StatisticsGen -> ExampleValidator (vs ImportSchemaGen:
                 SchemaImport of the home's schema version, schema/versions.py)
    -> DataGate (blocks a span that breaks the span rules (pipeline/validation.py: rows, header,
                 values, completeness floors, broken feed, schema anomalies) or, by policy, drifted
                 vs the previous validated span of its namespace; else publishes it as validated
                 examples and statistics)
    -> span window (validated upstream spans N-K+1..N and feedback spans M-J+1..M, one artifact per span)
    -> Transform (analyses only the new span: the analyzer cache of the previous span's Transform
                  holds the rest of the window)
    -> Tuner (`config.tune`: searches the hyperparameters on the window) or latest_hyperparameters
       (the newest Tuner's choice, none before the first tuning) -> Trainer
    -> Evaluator (vs the model serving now; Conveyor's blessing rule)
    -> InfraCheck (the candidate answers real eval examples through the serving code)
    -> ModelCard (the candidate's card: metrics per slice with intervals, fairness, importance, verdict)
    -> Pusher (blessed by both only; stages the version) -> Publish (makes it visible once recorded,
                 its push record carrying the Evaluator's overall metrics and DataGate's statistics,
                 its folder the model card)

`config.history` picks how the pipeline reaches earlier runs: TFX resolvers over MLMD ("mlmd",
local) or components over the validated-span index and the serving root ("stores", Kubeflow v2 /
Vertex, whose compiler has no custom resolvers). Same node ids but one (the "mlmd" form's
analyzer_cache resolver, which the stores form has no counterpart for), and the same edges but
one: the stores span window reads this run's span from DataGate's output, not CsvExampleGen's.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tfx import v1 as tfx
from tfx.proto import range_config_pb2
from tfx.utils import proto_utils

from data import spans_io
from pipeline import evaluation, user_code
from pipeline.artifact_properties import INDEX_URI_KEY, TUNER_ID
from pipeline.components.baseline_model import baseline_resolver
from pipeline.components.data_gate import DataGate
from pipeline.components.example_gen import CsvExampleGen
from pipeline.components.gated_evaluator import GatedEvaluator
from pipeline.components.infra_check import InfraCheck
from pipeline.components.model_card import ModelCard
from pipeline.components.previous_statistics import PreviousValidatedStatistics
from pipeline.components.push import Publish, StagingPusher
from pipeline.components.pushed_baseline import PreviousPushedModel
from pipeline.components.schema_import import SchemaImport
from pipeline.components.span_resolvers import LatestIfAnyStrategy, earlier_output_resolver, previous_span_resolver, span_window_resolver
from pipeline.components.span_window import SpanWindow
from pipeline.components.trainer import Trainer
from pipeline.components.tuned_hyperparameters import LatestTunedHyperparameters
from pipeline.components.tuner import Tuner
from pipeline.configs import PipelineConfig
from schema import derive
from schema import versions as schema_versions

DATA_GATE_ID = "DataGate"
SCHEMA_IMPORT_ID = "ImportSchemaGen"  # the node id ImportSchemaGen had: lineage and caches name it
TRANSFORM_ID = "Transform"
ANALYZER_CACHE_ID = "analyzer_cache"
LATEST_HYPERPARAMETERS_ID = "latest_hyperparameters"
COMPLETENESS_KEYS = ("floors", "natural_missing", "variation", "tolerance")  # what DataGate reads of completeness.json


def completeness_rules(config: PipelineConfig) -> str:
    """The completeness floors DataGate applies, as its JSON parameter (a change re-runs it)."""
    rules = derive.load_completeness(config.completeness_path)
    return json.dumps({key: rules[key] for key in COMPLETENESS_KEYS}, sort_keys=True)


def schema_source(config: PipelineConfig) -> tuple[str, schema_versions.SchemaVersion]:
    """The schema file a run imports and its version (schema/versions.py): the home's newest
    accepted version, else the curated file; a cluster run reads `remote_schema`, which must hold
    that version (the import checks its sha256)."""
    version = schema_versions.current(config.home, config.schema_path)
    return config.remote_schema or version.file, version


def card_settings(config: PipelineConfig) -> dict[str, Any]:
    """What the ModelCard component is told besides its inputs (a change re-runs it)."""
    return {
        "model_name": config.model_name,
        "pipeline_name": config.pipeline_name,
        "code_version": user_code.fingerprint(),
        "trigger": config.trigger,
        "intended_use": config.card_intended_use,
        "limitations": list(config.card_limitations),
        "seed": config.seed,
        "serving_root": config.serving_root_uri,
        "eval_config": json.loads(proto_utils.proto_to_json(evaluation.eval_config(config))),
        "gate": asdict(evaluation.Gate.from_config(config)),
        "contract": config.contract_config(),  # the pipeline's, where its file is not (Kubeflow)
    }


def _example_gen(config: PipelineConfig) -> CsvExampleGen:
    range_config = None
    if config.span is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(
                start_span_number=config.span, end_span_number=config.span
            )
        )
    # One namespace per run: its root and its folder prefix (span-{SPAN} or feedback-{SPAN}), so the
    # two never share files, cache entries or ExampleGen properties.
    return CsvExampleGen(
        input_base=config.input_root_uri,
        input_config=tfx.proto.Input(
            splits=[tfx.proto.Input.Split(name="all", pattern=spans_io.file_pattern(config.span_source))]
        ),
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


def _span_window(config: PipelineConfig, data_gate: Any, example_gen: Any) -> tuple[Any, Any]:
    """The node giving the training window (validated spans N-K+1..N, any run) and its channel."""
    if config.history == "stores":
        window = SpanWindow(
            validated_examples=data_gate.outputs["validated_examples"],
            validated_statistics=data_gate.outputs["validated_statistics"],
            index_uri=config.validated_spans_uri,
            window_spans=config.window_spans,
            feedback_window_spans=config.feedback_window_spans,
        ).with_id("span_window")
        return window, window.outputs["examples"]
    window = span_window_resolver(
        config.window_spans,
        config.feedback_window_spans,
        config.span_source,
        candidates=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples,
            producer_component_id=DATA_GATE_ID,
            output_key="validated_examples",
        ),
        current=example_gen.outputs["examples"],
    )
    # A plain Channel carries no run dependency: order the window after this run's gate.
    window.add_upstream_node(data_gate)
    return window, window.outputs["candidates"]


def _previous_statistics(config: PipelineConfig, example_gen: Any) -> tuple[Any, Any]:
    """DataGate's drift baseline (the validated statistics of the newest span older than this
    run's, in its namespace): the node giving it and its channel."""
    if config.history == "stores":
        node = PreviousValidatedStatistics(
            current=example_gen.outputs["examples"], index_uri=config.validated_spans_uri, namespace=config.span_source
        ).with_id("previous_statistics")
        return node, node.outputs["statistics"]
    node = previous_span_resolver(
        "previous_statistics",
        config.span_source,
        candidates=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id=DATA_GATE_ID,
            output_key="validated_statistics",
        ),
        current=example_gen.outputs["examples"],
    )
    return node, node.outputs["candidates"]


def _hyperparameters(config: PipelineConfig, examples: Any, transform: Any, schema: Any, example_gen: Any) -> tuple[Any, Any]:
    """The node giving the Trainer its hyperparameters and its channel: with `config.tune` the
    Tuner searching them on this window; else the newest Tuner's choice in this pipeline (nothing
    before the first tuning: the Trainer takes the defaults), found by a resolver ("mlmd") or read
    from the tuning index the stores-form Tuner writes ("stores"). Both read once this run's span
    is ingested, so the two forms have the same edges."""
    if config.tune:
        args = user_code.tuner_args(config)
        if config.history == "stores":
            args["custom_config"] = {**args["custom_config"], INDEX_URI_KEY: config.tuning_index_uri}
        tuner = Tuner(
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema,
            train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
            **args,
        ).with_id(TUNER_ID)
        return tuner, tuner.outputs["best_hyperparameters"]
    if config.history == "stores":
        latest = LatestTunedHyperparameters(current=example_gen.outputs["examples"], index_uri=config.tuning_index_uri)
        latest = latest.with_id(LATEST_HYPERPARAMETERS_ID)
        return latest, latest.outputs["hyperparameters"]
    resolver = tfx.dsl.Resolver(
        strategy_class=LatestIfAnyStrategy,
        hyperparameters=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.HyperParameters,
            producer_component_id=TUNER_ID,
            output_key="best_hyperparameters",
        ),
    ).with_id(LATEST_HYPERPARAMETERS_ID)
    resolver.add_upstream_node(example_gen)  # a plain Channel carries no run dependency
    return resolver, resolver.outputs["hyperparameters"]


def create_components(config: PipelineConfig) -> list[Any]:
    example_gen = _example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_file, version = schema_source(config)
    schema_gen = SchemaImport(schema_file=schema_file, version=version.properties()).with_id(SCHEMA_IMPORT_ID)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    schema = schema_gen.outputs["schema"]
    previous_statistics, baseline_statistics = _previous_statistics(config, example_gen)
    data_gate = DataGate(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=schema,
        previous_statistics=baseline_statistics,
        input_pattern=f"{config.input_root_uri.rstrip('/')}/{spans_io.file_pattern(config.span_source)}",
        completeness=completeness_rules(config),
        min_rows_ratio=config.min_rows_ratio,
        broken_feed_factor=config.broken_feed_factor,
        broken_meaning_jsd=config.broken_meaning_jsd,
        drift_thresholds=json.dumps(dict(config.drift_thresholds), sort_keys=True),
        completeness_drop=config.completeness_drop,
        drift_policy=config.drift_policy,
        median_shift=config.median_shift,
        span_namespace=config.span_source,
        serving_statistics_path=str(config.serving_statistics_path or ""),
        contract=json.dumps(config.contract_config()),
    ).with_id(DATA_GATE_ID)

    span_window, examples = _span_window(config, data_gate, example_gen)

    # Transform analyses only the spans its analyzer cache does not cover: with the MLMD window
    # each span is its own artifact, so the cache the previous span's Transform wrote holds every
    # span of this window but the new one. (The stores window copies its spans into one new
    # artifact, which no cache entry matches, so it gets no cache input.) Transform computes no
    # statistics (DataGate's validated statistics of each span already describe the window) and
    # writes no transformed examples: the Trainer applies the transform graph as it reads the window.
    analyzer_cache = None
    if config.history == "mlmd":
        analyzer_cache = earlier_output_resolver(
            ANALYZER_CACHE_ID,
            candidates=tfx.dsl.Channel(
                type=tfx.types.standard_artifacts.TransformCache,
                producer_component_id=TRANSFORM_ID,
                output_key="updated_analyzer_cache",
            ),
            current=example_gen.outputs["examples"],
        )
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema,
        analyzer_cache=analyzer_cache.outputs["candidates"] if analyzer_cache else None,
        disable_statistics=True,
        materialize=False,
        **user_code.transform_args(config),
    ).with_id(TRANSFORM_ID)
    hyperparameter_source, hyperparameters = _hyperparameters(config, examples, transform, schema, example_gen)
    trainer = Trainer(
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        hyperparameters=hyperparameters,
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        **user_code.trainer_args(config),
    )
    if config.history == "mlmd":
        baseline_model = baseline_resolver(trainer.outputs["model"], config.serving_root_uri)
    else:
        baseline_model = PreviousPushedModel(
            candidate=trainer.outputs["model"], serving_root=config.serving_root_uri
        ).with_id("baseline_model")
    evaluator = GatedEvaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_model.outputs["model"],
        eval_config=evaluation.eval_config(config),
        gate=evaluation.Gate.from_config(config),
    ).with_id("Evaluator")
    infra_check = InfraCheck(
        model=trainer.outputs["model"],
        examples=data_gate.outputs["validated_examples"],
        schema=schema,
        sample_size=config.infra_check_examples,
        contract=json.dumps(config.contract_config()),
    )
    card = ModelCard(
        model=trainer.outputs["model"],
        examples=examples,
        evaluation=evaluator.outputs["evaluation"],
        infra_blessing=infra_check.outputs["infra_blessing"],
        baseline_model=baseline_model.outputs["model"],
        settings=card_settings(config),
    ).with_id("ModelCard")
    pusher = StagingPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_check.outputs["infra_blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_root_uri)
        ),
    ).with_id("Pusher")
    publish = Publish(
        pushed_model=pusher.outputs["pushed_model"],
        evaluation=evaluator.outputs["evaluation"],
        validated_statistics=data_gate.outputs["validated_statistics"],
        model_card=card.outputs["model_card"],
        rollout=config.rollout,
    ).with_id("Publish")
    return [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        previous_statistics,
        data_gate,
        span_window,
        *([analyzer_cache] if analyzer_cache else []),
        transform,
        hyperparameter_source,
        trainer,
        baseline_model,
        evaluator,
        infra_check,
        card,
        pusher,
        publish,
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
