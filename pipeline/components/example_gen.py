"""CsvExampleGen whose executor resolves the span itself when no driver did (open-source KFP).

TFX's FileBasedExampleGen leaves `{SPAN}` in its input pattern for a driver to resolve: the span
and version to read, the input fingerprint, and the span/version properties of the output. Local
runs (LocalDagRunner) and Vertex AI (the `preCacheCheck` hook of the compiled spec, TFX's v2
file-based ExampleGen driver) run that driver before the executor; open-source Kubeflow Pipelines
does not, and TFX's executor would then look for files named literally `span-{SPAN}/...`.
This executor does the driver's resolution when the patterns still hold a span or version spec,
with TFX's own input processor (same range config, same span, same fingerprint), and otherwise
takes what the driver resolved. Either way it labels the output Examples with the span, version
and fingerprint, as the driver does, so the label never depends on the orchestrator carrying the
driver's output metadata over to the executor. Same component id and outputs as TFX's CsvExampleGen.
"""
from __future__ import annotations

from typing import Any

from tfx import v1 as tfx
from tfx.components.example_gen import driver, input_processor, utils
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils


def needs_resolving(input_config: example_gen_pb2.Input) -> bool:
    """Whether some split pattern still holds a span, date or version spec (no driver ran)."""
    return any(any(utils.verify_split_pattern_specs(split)) for split in input_config.splits)


def resolve(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """`exec_properties` with what the driver adds: span, version, fingerprint, concrete patterns."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = range_config_pb2.RangeConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.RANGE_CONFIG_KEY], range_config)
    processor = input_processor.FileBasedInputProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits, range_config
    )
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    return {
        **exec_properties,
        utils.SPAN_PROPERTY_NAME: span,
        utils.VERSION_PROPERTY_NAME: version,
        utils.FINGERPRINT_PROPERTY_NAME: processor.get_input_fingerprint(span, version),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
    }


def label(examples: tfx.types.standard_artifacts.Examples, exec_properties: dict[str, Any]) -> None:
    """Set span, version and fingerprint on `examples` as the driver does. (The v2 entrypoint
    passes a driver's span and version as floats: they are ints here.)"""
    version = exec_properties.get(utils.VERSION_PROPERTY_NAME)
    driver.update_output_artifact(
        {
            utils.SPAN_PROPERTY_NAME: int(exec_properties[utils.SPAN_PROPERTY_NAME]),
            utils.VERSION_PROPERTY_NAME: None if version is None else int(version),
            utils.FINGERPRINT_PROPERTY_NAME: exec_properties.get(utils.FINGERPRINT_PROPERTY_NAME),
        },
        examples.mlmd_artifact,
    )


class SpanResolvingExecutor(csv_executor.Executor):
    """TFX's CSV ExampleGen executor, resolving the span first when no driver ran, and labelling its output."""

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        if needs_resolving(input_config):
            exec_properties = resolve(exec_properties)
        if exec_properties.get(utils.SPAN_PROPERTY_NAME) is not None:  # resolved here or by a driver
            label(artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY]), exec_properties)
        super().Do(input_dict, output_dict, exec_properties)


class CsvExampleGen(tfx.components.CsvExampleGen):
    """TFX's CsvExampleGen (same id, driver and outputs) with SpanResolvingExecutor."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(SpanResolvingExecutor)
