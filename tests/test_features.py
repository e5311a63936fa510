"""The feature contract is self-consistent and matches the curated schema."""
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils

from models import features
from pipeline.configs import PipelineConfig


def _schema() -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(str(PipelineConfig().schema_path), schema_pb2.Schema())


def test_every_column_is_used_or_declared_unused():
    accounted = set(features.MODEL_FEATURES) | set(features.UNUSED_FEATURES) | {features.TIPS_KEY}
    assert accounted == set(features.CSV_COLUMNS)
    assert len(features.MODEL_FEATURES) == len(set(features.MODEL_FEATURES))


def test_label_source_is_not_a_serving_feature():
    assert features.TIPS_KEY not in features.SERVING_FEATURES
    assert features.FARE_KEY in features.SERVING_FEATURES
    assert set(features.MODEL_FEATURES) <= set(features.SERVING_FEATURES)
    assert set(features.SLICE_FEATURES) <= set(features.SERVING_FEATURES)


def test_schema_has_exactly_the_contract_columns_with_their_types():
    schema = _schema()
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    assert types == dict(features.RAW_TYPES)


def test_schema_environments_keep_label_source_out_of_serving():
    schema = _schema()
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    tips = next(f for f in schema.feature if f.name == features.TIPS_KEY)
    assert list(tips.not_in_environment) == ["SERVING"]


def test_categorical_buckets_cover_schema_domains():
    schema = _schema()
    for feature in schema.feature:
        if feature.name in features.CATEGORICAL_INT_FEATURES:
            assert feature.int_domain.max < features.CATEGORICAL_INT_FEATURES[feature.name], feature.name
            assert feature.int_domain.min >= 0
