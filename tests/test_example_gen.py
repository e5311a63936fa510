"""Conveyor's ExampleGen executor: the driver's span resolution where no driver ran (open-source KFP).

The executed spec (tests/test_kubeflow_execute.py) compares it with Vertex's driver end to end;
here the resolution itself, and the output's labels when a driver did resolve the span.
"""
from __future__ import annotations

import json

from tfx.components.example_gen import utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys
from tfx.utils import proto_utils

from data import spans_io
from data.spans_io import file_pattern
from pipeline import configs
from pipeline.components import example_gen


def _properties(spans_root, pattern: str = file_pattern(), span: int | None = None) -> dict:
    output = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=1)])
    )
    properties = {
        keys.INPUT_BASE_KEY: str(spans_root),
        keys.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=pattern)])),
        keys.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
    }
    if span is not None:
        ranges = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span))
        properties[keys.RANGE_CONFIG_KEY] = proto_utils.proto_to_json(ranges)
    return properties


def _pattern(properties: dict) -> str:
    return json.loads(properties[keys.INPUT_CONFIG_KEY])["splits"][0]["pattern"]


def test_the_compiled_span_or_else_the_newest_is_resolved_with_its_fingerprint(shipped_rows, tmp_path):
    for span in (1, 2, 3):
        spans_io.write_span(tmp_path, span, shipped_rows[span * 10 : span * 10 + 10])
    fixed = example_gen.resolve(_properties(tmp_path, span=2))
    assert (fixed[utils.SPAN_PROPERTY_NAME], fixed[utils.VERSION_PROPERTY_NAME], _pattern(fixed)) == (2, None, "span-2/*.csv")
    assert fixed[utils.FINGERPRINT_PROPERTY_NAME].startswith("split:all,num_files:1,total_bytes:")
    newest = example_gen.resolve(_properties(tmp_path))
    assert (newest[utils.SPAN_PROPERTY_NAME], _pattern(newest)) == (3, "span-3/*.csv")
    assert newest[utils.FINGERPRINT_PROPERTY_NAME] != fixed[utils.FINGERPRINT_PROPERTY_NAME]
    assert example_gen.needs_resolving(example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=file_pattern())]))
    assert not example_gen.needs_resolving(example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="span-3/*.csv")]))


def test_a_span_a_driver_resolved_labels_the_output_as_the_driver_does(shipped_rows, tmp_path):
    """As the v2 entrypoint hands them over from a driver: pattern resolved, span as a float, and
    an output artifact that carries none of the driver's metadata."""
    spans_io.write_span(tmp_path / "spans", 4, shipped_rows[:30])
    properties = {
        **_properties(tmp_path / "spans", pattern="span-4/*.csv"),
        utils.SPAN_PROPERTY_NAME: 4.0,
        utils.FINGERPRINT_PROPERTY_NAME: "split:all,num_files:1",
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=configs.PipelineConfig().beam_args(), tmp_dir=str(tmp_path / "tmp")
    )
    example_gen.SpanResolvingExecutor(context).Do({}, {keys.EXAMPLES_KEY: [examples]}, properties)
    assert examples.get_int_custom_property("span") == 4 and not examples.has_custom_property("version")
    assert examples.get_string_custom_property(utils.FINGERPRINT_PROPERTY_NAME) == "split:all,num_files:1"
    assert (tmp_path / "examples" / "Split-train").is_dir()
