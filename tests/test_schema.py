"""The curated schema and completeness floors: reproducible from schema/derive.py, accept the shipped data, reject bad data."""
from pathlib import Path

import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.utils import io_utils

from data import spans_io
from pipeline import anomalies as anomalies_lib
from pipeline.configs import PipelineConfig
from schema import derive
from tests import taxi


@pytest.fixture(scope="module")
def schema() -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(str(PipelineConfig().schema_path), schema_pb2.Schema())


def _anomalies(csv_path: Path, schema: schema_pb2.Schema, environment: str = "TRAINING") -> dict[str, set[str]]:
    stats = tfdv.generate_statistics_from_csv(str(csv_path))
    result = tfdv.validate_statistics(stats, schema, environment=environment)
    return {
        a.feature: set(a.kind.split(","))
        for a in anomalies_lib.from_proto("all", result)
    }


def test_committed_schema_is_what_derive_produces(shipped_spans, schema):
    assert derive.derive(shipped_spans) == schema, "re-run `python -m schema.derive` and review the diff"


def test_committed_completeness_floors_are_what_derive_produces(shipped_spans):
    committed = derive.load_completeness(PipelineConfig().completeness_path)
    assert derive.derive_completeness(shipped_spans) == committed, "re-run `python -m schema.derive` and review the diff"


def test_no_feature_has_a_fixed_shape_and_optional_presence_is_the_floor(schema):
    floors = derive.load_completeness(PipelineConfig().completeness_path)["floors"]
    for feature in schema.feature:
        assert not feature.HasField("shape") and (feature.value_count.min, feature.value_count.max) == (0, 1)
        expected = floors[feature.name] if feature.name in taxi.OPTIONAL else 1.0
        assert feature.presence.min_fraction == expected, feature.name


def test_shipped_spans_validate_cleanly(shipped_spans, schema):
    for span in spans_io.existing_spans(shipped_spans):
        csv_path = spans_io.span_dir(shipped_spans, span) / spans_io.SPAN_FILE
        assert _anomalies(csv_path, schema) == {}, f"span {span}"


def test_corrupted_sample_yields_the_expected_anomalies(tmp_path, shipped_rows, schema):
    rows = [dict(r) for r in shipped_rows[:300]]
    for row in rows[:30]:
        row["payment_type"] = "Bitcoin"
        row["trip_start_hour"] = "31"
        row["pickup_latitude"] = "48.85"  # Paris, not Chicago
    for row in rows:
        del row["fare"]
    path = spans_io.write_span(tmp_path, 1, rows, columns=tuple(c for c in rows[0]))
    found = _anomalies(path, schema)
    U = anomalies_pb2.AnomalyInfo.Type.Name
    assert found == {
        "payment_type": {U(anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES)},
        "trip_start_hour": {U(anomalies_pb2.AnomalyInfo.INT_TYPE_BIG_INT)},
        "pickup_latitude": {U(anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT)},
        "fare": {U(anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN)},
    }


def test_serving_environment_does_not_require_the_label_source(tmp_path, shipped_rows, schema):
    rows = [{k: v for k, v in r.items() if k != "tips"} for r in shipped_rows]
    path = spans_io.write_span(tmp_path, 1, rows, columns=tuple(rows[0]))
    assert _anomalies(path, schema, environment="SERVING") == {}
    assert set(_anomalies(path, schema, environment="TRAINING")) == {"tips"}
