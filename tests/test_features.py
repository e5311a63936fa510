"""The active feature contract (the taxi's) is self-consistent and matches the curated schema."""
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils

from models import features
from pipeline.configs import PipelineConfig


def _schema() -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(str(PipelineConfig().schema_path), schema_pb2.Schema())


def test_every_column_is_used_or_declared_unused():
    contract = features.active()
    accounted = set(contract.model_features) | set(contract.unused) | set(contract.label.label_only)
    assert accounted == set(contract.csv_columns)
    assert len(contract.model_features) == len(set(contract.model_features))


def test_label_source_is_not_a_serving_feature():
    contract = features.active()
    assert contract.label.label_only == ("tips",)
    assert "tips" not in contract.serving_features
    assert "fare" in contract.serving_features
    assert set(contract.model_features) <= set(contract.serving_features)
    assert set(contract.slices) <= set(contract.serving_features)


def test_schema_has_exactly_the_contract_columns_with_their_types():
    schema = _schema()
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    assert types == features.active().raw_types


def test_schema_environments_keep_label_source_out_of_serving():
    schema = _schema()
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    tips = next(f for f in schema.feature if f.name == "tips")
    assert list(tips.not_in_environment) == ["SERVING"]


def test_categorical_buckets_cover_schema_domains():
    schema = _schema()
    buckets = {f.name: f.buckets for f in features.active().with_transform("category")}
    for feature in schema.feature:
        if feature.name in buckets:
            assert feature.int_domain.max < buckets[feature.name], feature.name
            assert feature.int_domain.min >= 0
