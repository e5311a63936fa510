"""CSV to tf.Example with Arrow (`pipeline/components/csv_examples.py`) against TFX's own conversion.

The oracle is TFX: its CSV ExampleGen executor end to end on a shipped span (the same records in the
same train/eval split), and its CSV-to-Example transform on small files holding every case the Arrow
path reads itself and every case it hands to TFX (the output must be the same either way).
"""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys
from tfx.utils import proto_utils

from pipeline import configs
from pipeline.components import csv_examples, example_gen

HEADER = "whole,mixed,text,empty,signed\r\n"
# (name, CSV body, whether the Arrow path reads it itself)
CASES = [
    (
        "decimals",
        "1,1,Cash,,-5\r\n007,2.5,12,,+5\r\n\r\n-0,.5,Crédit,,0\r\n9223372036854775807,1e39,x y,,-9223372036854775808\r\n"
        "12,1.,a,,1\r\n,,,,\r\n3,1E+05,,,2\r\n4,-1.5e-3,7.5,,3\r\n5,0.1000000000000000055511151231257827,b,,4\r\n",
        True,
    ),
    ("integers only", "1,2,3,,4\n5,6,7,,8\n", True),
    ("past int64 in a text column", "1,2,99999999999999999999,,4\n5,6,text,,8\n", True),
    ("past int64 in a number column", "1,2,3,,99999999999999999999\n5,6,7,,8\n", False),
    ("a quoted cell", '1,2,"a,b",,4\n', False),
    ("a space before a number", "1, 2,x,,4\n", False),
    ("nan", "1,nan,x,,4\n2,1.5,y,,5\n", False),
    ("no rows", "", True),
]


def _examples_of_split(uri: Path, split: str) -> list[bytes]:
    files = [str(path) for path in sorted((uri / f"Split-{split}").glob("*.gz"))]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return sorted(tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True) for record in records)


def _run_executor(executor_class: type, spans_root: Path, out: Path) -> tuple[dict[str, list[bytes]], dict, list[str]]:
    """The records of each split, the output artifact's properties and its file names."""
    output = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=2),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ]
        )
    )
    properties = {
        keys.INPUT_BASE_KEY: str(spans_root),
        keys.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="span-1/*.csv")])
        ),
        keys.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
        keys.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=configs.PipelineConfig().beam_args(), tmp_dir=str(out / "tmp")
    )
    executor_class(context).Do({}, {keys.EXAMPLES_KEY: [examples]}, properties)
    files = sorted(str(path.relative_to(out)) for path in out.glob("Split-*/*"))
    labels = {"split_names": examples.split_names, **{key: examples.get_custom_property(key) for key in examples.mlmd_artifact.custom_properties}}
    return {split: _examples_of_split(out, split) for split in ("train", "eval")}, labels, files


def test_a_shipped_span_gives_tfx_examples_byte_for_byte_in_the_same_splits(shipped_spans, tmp_path):
    names = (shipped_spans / "span-1" / "data.csv").read_text().splitlines()[0].split(",")
    types = csv_examples.infer_types([str(shipped_spans / "span-1" / "data.csv")], names)
    assert types["fare"] == csv_examples.ColumnType.FLOAT and types["company"] == csv_examples.ColumnType.STRING
    assert types["pickup_census_tract"] == csv_examples.ColumnType.UNKNOWN  # empty in all of span 1
    theirs, their_labels, their_files = _run_executor(csv_executor.Executor, shipped_spans, tmp_path / "tfx")
    ours, our_labels, our_files = _run_executor(example_gen.SpanResolvingExecutor, shipped_spans, tmp_path / "ours")
    assert len(ours["train"]) + len(ours["eval"]) == 10_000 and len(ours["eval"]) > 3_000
    assert ours == theirs
    assert our_files == their_files == ["Split-eval/data_tfrecord-00000-of-00001.gz", "Split-train/data_tfrecord-00000-of-00001.gz"]
    assert our_labels == their_labels and our_labels["payload_format"] == "FORMAT_TF_EXAMPLE"


def _serialised(example: tf.train.Example | bytes) -> bytes:
    """TFX's partition key of an output record (TFX's transform gives protos, Arrow's bytes)."""
    return example if isinstance(example, bytes) else example.SerializeToString(deterministic=True)


def _same_examples(name: str, rows: int):
    """A Beam matcher: the case's one (TFX's, ours) pair holds the same `rows` records."""

    def match(actual: list[tuple[list[bytes], list[bytes]]]) -> None:
        [(theirs, ours)] = actual
        assert len(theirs) == rows, f"{name}: TFX gave {len(theirs)} records, not {rows}"
        assert sorted(ours) == sorted(theirs), f"{name}: the records differ from TFX's"

    return match


def test_every_case_converts_as_tfx_converts_it_whichever_path_reads_it(tmp_path):
    with beam.Pipeline(options=PipelineOptions(configs.PipelineConfig().beam_args())) as pipeline:
        for name, body, fast in CASES:
            root = tmp_path / name.replace(" ", "_")
            (root / "split").mkdir(parents=True)
            (root / "split" / "data.csv").write_bytes((HEADER + body).encode())
            try:
                csv_examples.infer_types([str(root / "split" / "data.csv")], HEADER.strip().split(","))
                read_by_arrow = True
            except csv_examples.Unsupported:
                read_by_arrow = False
            assert read_by_arrow == fast, name
            properties = {keys.INPUT_BASE_KEY: str(root)}
            tfx_transform = csv_executor.Executor().GetInputSourceToExamplePTransform()(properties, "split/*.csv")
            ours_transform = example_gen.SpanResolvingExecutor().GetInputSourceToExamplePTransform()(properties, "split/*.csv")
            theirs = pipeline | f"Tfx[{name}]" >> tfx_transform | f"SerialiseTfx[{name}]" >> beam.Map(_serialised)
            ours = pipeline | f"Ours[{name}]" >> ours_transform | f"SerialiseOurs[{name}]" >> beam.Map(_serialised)
            pairs = (
                pipeline
                | f"Once[{name}]" >> beam.Create([None])
                | f"Pair[{name}]" >> beam.Map(lambda _, a, b: (a, b), beam.pvalue.AsList(theirs), beam.pvalue.AsList(ours))
            )
            rows = sum(1 for line in body.splitlines() if line.strip("\r"))
            assert_that(pairs, _same_examples(name, rows), label=f"Check[{name}]")


def test_a_carriage_return_inside_a_line_is_left_to_tfx_which_refuses_it(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_bytes(b"a,b\r\n1,2\r3\r\n")
    with pytest.raises(csv_examples.Unsupported, match="carriage return"):
        csv_examples.infer_types([str(csv)], ["a", "b"])


def test_a_number_column_with_a_word_becomes_text_as_tfx_infers_it(tmp_path):
    """The generator's `wrong_types` problem: validation, not the reader, must report it."""
    csv = tmp_path / "data.csv"
    csv.write_text("trip_seconds,fare\n180,5.5\nthree minutes,6.0\n240,7.25\n")
    assert csv_examples.infer_types([str(csv)], ["trip_seconds", "fare"]) == {
        "trip_seconds": csv_examples.ColumnType.STRING,
        "fare": csv_examples.ColumnType.FLOAT,
    }
