"""CsvExampleGen whose executor resolves the span itself when no driver did (open-source KFP), and
converts CSV with Arrow (`csv_examples`: TFX's Examples, byte for byte, without its per-cell Python).

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

import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from absl import logging
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from tfx import v1 as tfx
from tfx.components.example_gen import driver, input_processor, utils, write_split
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from pipeline.components import csv_examples


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


class _CsvToExamples(beam.PTransform):
    """One input split's CSV files as serialised tf.Examples: Arrow's reading when it reproduces TFX's
    exactly (`csv_examples`), TFX's own conversion otherwise. The column types are inferred here,
    while the graph is built, in one streaming pass over the split."""

    def __init__(self, exec_properties: dict[str, Any], split_pattern: str) -> None:
        super().__init__()
        self._exec_properties = exec_properties
        self._split_pattern = split_pattern

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        pattern = os.path.join(self._exec_properties[standard_component_specs.INPUT_BASE_KEY], self._split_pattern)
        files = sorted(fileio.glob(pattern))
        if not files:
            raise RuntimeError(f"no CSV file matches {pattern}")
        names = io_utils.load_csv_column_names(files[0])
        for other in files[1:]:
            if io_utils.load_csv_column_names(other) != names:
                raise RuntimeError(f"{other} has another header than {files[0]} (split {pattern})")
        try:
            types = csv_examples.infer_types(files, names)
        except csv_examples.Unsupported as reason:
            logging.info("Converting %s with TFX's CSV reader: %s", pattern, reason)
            return pipeline | "TfxCsvToExample" >> csv_executor.Executor().GetInputSourceToExamplePTransform()(
                self._exec_properties, self._split_pattern
            )
        return (
            pipeline
            | "CreateFilenames" >> beam.Create(files)
            | "ToTFExample" >> beam.FlatMap(_encoded, names, types).with_output_types(bytes)
        )


def _encoded(path: str, names: list[str], types: csv_examples.Types) -> Iterator[bytes]:
    """The serialised Examples of one CSV file, one at a time."""
    for batch in csv_examples.encode_file(path, names, types):
        yield from batch


class SpanResolvingExecutor(csv_executor.Executor):
    """TFX's CSV ExampleGen executor, resolving the span first when no driver ran, and labelling its
    output. On a local Beam runner each split is written as it is read: TFX's writer reshuffles the
    records first, which on one machine balances nothing and makes Beam's local runner hold every
    record of the span in memory."""

    def GetInputSourceToExamplePTransform(self) -> type[beam.PTransform]:
        return _CsvToExamples

    def _runs_locally(self) -> bool:
        runner = PipelineOptions(self._beam_pipeline_args or []).view_as(StandardOptions).runner
        return runner in (None, "DirectRunner", "FnApiRunner", "SwitchingDirectRunner")

    def _write_in_order(self, output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        """TFX's ExampleGen output (splits, files, payload and file format) without the reshuffle."""
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact = artifact_utils.get_single_instance(examples)
        artifact.split_names = artifact_utils.encode_split_names(utils.generate_output_split_names(input_config, output_config))
        with self._make_beam_pipeline() as pipeline:
            for name, records in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = (
                    records
                    | f"Serialise[{name}]" >> beam.ParDo(write_split.MaybeSerialize())
                    | f"Write[{name}]" >> beam.io.WriteToTFRecord(
                        os.path.join(artifact_utils.get_split_uri(examples, name), write_split.DEFAULT_TF_RECORD_FILE_NAME),
                        file_name_suffix=".gz",
                    )
                )
        if exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY):
            examples_utils.set_payload_format(artifact, exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY])
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        if file_format:
            examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        if needs_resolving(input_config):
            exec_properties = resolve(exec_properties)
        if exec_properties.get(utils.SPAN_PROPERTY_NAME) is not None:  # resolved here or by a driver
            label(artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY]), exec_properties)
        if self._runs_locally():
            self._write_in_order(output_dict, exec_properties)
        else:
            super().Do(input_dict, output_dict, exec_properties)


class CsvExampleGen(tfx.components.CsvExampleGen):
    """TFX's CsvExampleGen (same id, driver and outputs) with SpanResolvingExecutor."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(SpanResolvingExecutor)
