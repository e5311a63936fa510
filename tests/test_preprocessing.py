"""preprocessing_fn, run through tf.Transform on real rows, produces the contract's outputs."""
import numpy as np
import pytest

from models import features
from tests import taxi
from tests.tft_helpers import transform_rows


@pytest.fixture(scope="module")
def transformed(shipped_rows, tmp_path_factory):
    rows = [dict(r) for r in shipped_rows[:200]]
    rows[0].update(fare="10.0", tips="2.5", payment_type="Credit Card", trip_start_hour="23")  # 25 %: big tipper
    rows[1].update(fare="10.0", tips="2.0", payment_type="Cash")  # exactly 20 %: not
    rows[2].update(dropoff_latitude="", company="", dropoff_community_area="")  # missing optionals
    outputs, _ = transform_rows(rows, tmp_path_factory.mktemp("tft"))
    return rows, outputs


def test_outputs_are_exactly_the_transformed_contract_plus_label(transformed):
    _, outputs = transformed
    expected = {features.transformed_name(k) for k in features.active().model_features} | {features.active().label.name}
    assert set(outputs[0]) == expected


def test_label_is_tip_above_twenty_percent_of_fare(transformed):
    rows, outputs = transformed
    assert outputs[0][features.active().label.name] == 1
    assert outputs[1][features.active().label.name] == 0
    expected = [int(taxi.is_big_tipper(float(r["tips"]), float(r["fare"]))) for r in rows]
    assert [o[features.active().label.name] for o in outputs] == expected


def test_numeric_features_are_z_scored(transformed):
    _, outputs = transformed
    for key in taxi.DENSE_FLOAT_FEATURES:
        values = np.array([o[features.transformed_name(key)] for o in outputs])
        assert abs(values.mean()) < 1e-3 and abs(values.std() - 1) < 1e-2, key


def test_categoricals_are_ids_within_their_bucket_counts(transformed):
    _, outputs = transformed
    for key, buckets in {**taxi.CATEGORICAL_INT_FEATURES, **taxi.HASHED_FEATURES}.items():
        ids = [o[features.transformed_name(key)] for o in outputs]
        assert all(0 <= i < buckets for i in ids), key
    assert outputs[0][features.transformed_name("trip_start_hour")] == 23
    assert outputs[2][features.transformed_name("dropoff_community_area")] == 0  # missing -> 0
    for key in taxi.BUCKET_FEATURES:
        ids = {o[features.transformed_name(key)] for o in outputs}
        assert ids <= set(range(taxi.BUCKET_COUNT)) and len(ids) > 1, key


def test_vocabulary_maps_frequent_values_first(transformed):
    rows, outputs = transformed
    payment = features.transformed_name("payment_type")
    by_value = {}
    for row, out in zip(rows, outputs):
        by_value.setdefault(row["payment_type"], set()).add(out[payment])
    assert all(len(ids) == 1 for ids in by_value.values())  # one id per value
    most_common = max(by_value, key=lambda v: sum(r["payment_type"] == v for r in rows))
    assert by_value[most_common] == {0}
