"""Run the real preprocessing_fn through tf.Transform on a handful of CSV rows (no pipeline)."""
from __future__ import annotations

import pickle
from pathlib import Path

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
from tfx.utils import io_utils

from models import features, preprocessing
from pipeline.configs import PipelineConfig

BEAM_OPTIONS = PipelineConfig().beam_args()  # in_memory, as the pipeline runs Beam


def load_schema() -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(str(PipelineConfig().schema_path), schema_pb2.Schema())


def to_instance(row: dict[str, str], schema: schema_pb2.Schema) -> dict:
    """A CSV row as a tf.Transform instance dict typed by the schema."""
    instance = {}
    for feature in schema.feature:
        text = row.get(feature.name, "")
        kind = features.active().raw_types[feature.name]
        value = None if text == "" else int(float(text)) if kind == "INT" else float(text) if kind == "FLOAT" else text.encode()
        instance[feature.name] = [value] if value is not None else []
    return instance


def transform_rows(rows: list[dict[str, str]], output_dir: Path) -> tuple[list[dict], tft.TFTransformOutput]:
    """Analyze + transform `rows`; returns transformed instances and the written transform graph."""
    schema = load_schema()
    metadata = dataset_metadata.DatasetMetadata(schema)
    instances = [to_instance(r, schema) for r in rows]
    with beam.Pipeline(options=PipelineOptions(BEAM_OPTIONS)) as pipeline:
        with tft_beam.Context(temp_dir=str(output_dir / "tmp")):
            raw = pipeline | beam.Create(instances)
            (transformed, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
                preprocessing.preprocessing_fn
            )
            transform_fn | tft_beam.WriteTransformFn(str(output_dir))
            dump = output_dir / "transformed.pkl"
            transformed | beam.combiners.ToList() | beam.Map(_write_pickle, str(dump))
    metadata_io.write_metadata(metadata, str(output_dir / tft.TFTransformOutput.RAW_METADATA_DIR))
    with open(dump, "rb") as handle:
        return pickle.load(handle), tft.TFTransformOutput(str(output_dir))


def _write_pickle(items: list, path: str) -> None:
    with open(path, "wb") as handle:
        pickle.dump(items, handle)


def raw_feature_spec() -> dict:
    return schema_utils.schema_as_feature_spec(load_schema()).feature_spec
