"""The feature contract file: the taxi's parses into the constants it replaced, a bad file is a
one-line error naming its key, and another contract drives schema derivation, preprocessing and
instance parsing without a taxi name."""
from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest

from models import contract, features, preprocessing
from models.instances import FeatureRules, InstanceError, parse_instance
from pipeline.configs import PipelineConfig
from tests import taxi
from tests.tft_helpers import _write_pickle

TAXI = features.DEFAULT_PATH.read_text()


def test_taxi_file_parses_into_the_constants_it_replaced():
    c = contract.load(features.DEFAULT_PATH)
    assert c.raw_types == taxi.RAW_TYPES and c.csv_columns == taxi.CSV_COLUMNS
    assert c.serving_features == taxi.SERVING_FEATURES and c.model_features == taxi.MODEL_FEATURES
    assert tuple(f.name for f in c.with_transform("zscore_log1p")) == taxi.DENSE_FLOAT_FEATURES
    assert {(f.name, f.buckets) for f in c.with_transform("quantile_buckets")} == {(k, taxi.BUCKET_COUNT) for k in taxi.BUCKET_FEATURES}
    assert [(f.name, f.top_k, f.oov) for f in c.with_transform("vocabulary")] == [
        (k, taxi.VOCAB_SIZE, taxi.OOV_BUCKETS) for k in taxi.VOCAB_FEATURES]
    assert {f.name: f.buckets for f in c.with_transform("category")} == taxi.CATEGORICAL_INT_FEATURES
    assert {f.name: f.buckets for f in c.with_transform("hash")} == taxi.HASHED_FEATURES
    assert c.unused == taxi.UNUSED_FEATURES and c.slices == taxi.SLICE_FEATURES
    assert (c.label.name, c.label.value, c.label.of, c.label.fraction, c.label.label_only) == (
        taxi.LABEL_KEY, taxi.TIPS_KEY, taxi.FARE_KEY, taxi.BIG_TIPPER_FRACTION, (taxi.TIPS_KEY,))
    assert tuple(n for n in c.csv_columns if c.column(n).optional) == tuple(n for n in taxi.CSV_COLUMNS if n in taxi.OPTIONAL)
    assert c.drift_thresholds() == taxi.DRIFT_THRESHOLDS
    assert (c.model_name, c.intended_use, c.limitations) == (taxi.MODEL_NAME, taxi.CARD_INTENDED_USE, taxi.CARD_LIMITATIONS)
    config = PipelineConfig()
    assert (config.model_name, dict(config.drift_thresholds), config.card_intended_use, config.card_limitations) == (
        taxi.MODEL_NAME, taxi.DRIFT_THRESHOLDS, taxi.CARD_INTENDED_USE, taxi.CARD_LIMITATIONS)


@pytest.mark.parametrize("tips, fare", [(2.0, 10.0), (2.01, 10.0), (0.0, 0.0), (3.5, 12.25), (0.2, 1.0)])
def test_taxi_label_rule_is_the_big_tipper_rule(tips, fare):
    assert features.active().label.of_row({"tips": tips, "fare": fare}) == taxi.is_big_tipper(tips, fare)


@pytest.mark.parametrize("old, new, key", [
    ('{transform = "hash", buckets = 256}', '{transform = "embedding", buckets = 256}', "features.dropoff_census_tract.transform"),
    ('value = "tips"', 'value = "tip"', "label.value"),
    ('slices = ["payment_type", "trip_start_hour"]', 'slices = ["payment_type", "hour"]', "slices"),
    ('slices = ["payment_type", "trip_start_hour"]', 'slices = ["tips"]', "slices"),
    ('trip_miles = {type = "float", min = 0.0}', 'trip_miles = {type = "float", min = 0.0}\nfare = {type = "float"}', "fare"),
    ('trip_miles = {type = "float", min = 0.0}', 'trip_miles = {type = "double"}', "columns.trip_miles.type"),
    ('trip_start_day = {transform = "category", buckets = 8}', 'trip_start_day = {transform = "category", buckets = "8"}',
     "features.trip_start_day.buckets"),
    ('payment_type = {transform = "vocabulary", top_k = 1000, oov = 10}', 'payment_type = {transform = "category", buckets = 9}',
     "features.payment_type.transform"),
    ('fraction = 0.2', 'fraction = 0.2\ncolour = "red"', "label.colour"),
    ('tips = 0.04', 'tips = 1.5', "drift.features.tips"),
    ('ratio = ["fare", "trip_miles"]', 'ratio = ["fare", "company"]', "plausibility.fare_per_mile.ratio"),
    ('ratio = ["fare", "trip_miles"]', 'ratio = ["fare"]', "plausibility.fare_per_mile.ratio"),
    ('median = [1.0, 100.0]', 'median = [100.0, 1.0]', "plausibility.fare_per_mile.median"),
    ('median = [1.0, 100.0]', 'median = [1.0, 100.0]\nsame = ["fare", "tips"]', "plausibility.fare_per_mile"),
    ('scale = 3600', 'scale = 0', "plausibility.speed_mph.scale"),
    ('where = {payment_type = "Cash"}', 'where = {fare = "Cash"}', "plausibility.cash_tip_share.where"),
    ('max_share = 0.5', 'max_share = 5', "plausibility.dropoff_is_not_pickup.max_share"),
    ('max_share = 0.5', 'max_share = 0.5\nmedian = [0, 1]', "plausibility.dropoff_is_not_pickup.median"),
])
def test_a_bad_contract_is_one_line_naming_its_key(tmp_path, old, new, key):
    assert old in TAXI
    path = tmp_path / "bad.toml"
    path.write_text(TAXI.replace(old, new, 1))
    with pytest.raises(contract.ContractError) as raised:
        contract.load(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message


SMALL = """
name = "churn"
slices = ["plan"]

[columns]
age = {type = "int", min = 0, max = 120}
income = {type = "float", optional = true, min = 0.0}
plan = {type = "string", values = ["basic", "plus", "pro"]}
churned = {type = "int"}

[features]
age = {transform = "zscore"}
income = {transform = "zscore_log1p"}
plan = {transform = "vocabulary", top_k = 10, oov = 1}

[label]
name = "will_churn"
kind = "column"
column = "churned"

[drift]
string = 0.1
numeric = 0.05
"""


@pytest.fixture()
def small(tmp_path, monkeypatch):
    """A four-column contract made active, and a span of it."""
    path = tmp_path / "churn.toml"
    path.write_text(SMALL)
    monkeypatch.setenv(features.PATH_VARIABLE, str(path))
    spans = tmp_path / "spans" / "span-1"
    spans.mkdir(parents=True)
    rows = [{"age": 20 + i % 50, "income": "" if i % 10 == 0 else 1000.0 * (i % 7 + 1), "plan": ["basic", "plus", "pro"][i % 3],
             "churned": int(i % 4 == 0)} for i in range(120)]
    with open(spans / "data.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["age", "income", "plan", "churned"])
        writer.writeheader()
        writer.writerows(rows)
    return path, tmp_path / "spans", rows


def test_another_contract_derives_its_schema_and_config(small):
    path, spans, _ = small
    from schema import derive

    c = features.active()
    assert (c.serving_features, c.model_features) == (("age", "income", "plan"), ("income", "age", "plan"))  # by transform
    assert c.plausibility == ()  # optional: a contract without [plausibility] declares no rule
    assert set(derive._files(spans)) == {"span-1"}  # no taxi sample mixed in
    completeness = derive.derive_completeness(spans)
    assert set(completeness["floors"]) == {"age", "income", "plan", "churned"}
    schema = derive.derive(spans, completeness)
    by_name = {f.name: f for f in schema.feature}
    assert [f.name for f in schema.feature] == ["age", "income", "plan", "churned"]
    assert list(by_name["churned"].not_in_environment) == ["SERVING"]
    assert (by_name["age"].int_domain.min, by_name["age"].int_domain.max, by_name["age"].presence.min_fraction) == (0, 120, 1.0)
    assert by_name["income"].presence.min_fraction == completeness["floors"]["income"] < 1.0
    assert [list(d.value) for d in schema.string_domain] == [["basic", "plus", "pro"]]
    config = PipelineConfig(contract_path=path)
    assert (config.model_name, dict(config.drift_thresholds)) == ("churn", {"age": 0.05, "income": 0.05, "plan": 0.1, "churned": 0.05})
    assert config.replace(contract_path=features.DEFAULT_PATH).model_name == "taxi"  # another contract, its own defaults
    assert config.trainer_config()[features.TEXT_KEY] == path.read_text()  # the text travels, not the local path


def test_another_contract_drives_preprocessing_and_instance_parsing(small, tmp_path):
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata
    from tfx.utils import io_utils

    from schema import derive

    path, spans, rows = small
    schema = derive.derive(spans)
    schema_path = tmp_path / "schema.pbtxt"
    io_utils.write_pbtxt_file(str(schema_path), schema)
    typed = {"int": int, "float": float, "string": str.encode}
    instances = [{k: [] if v == "" else [typed[features.active().column(k).type](v)] for k, v in row.items()} for row in rows]
    with beam.Pipeline(options=PipelineOptions(PipelineConfig().beam_args())) as pipeline:
        with tft_beam.Context(temp_dir=str(tmp_path / "tft")):
            (transformed, _), _ = (pipeline | beam.Create(instances), dataset_metadata.DatasetMetadata(schema)) | (
                tft_beam.AnalyzeAndTransformDataset(lambda inputs: preprocessing.preprocessing_fn(inputs, {"contract_path": str(path)})))
            transformed | beam.combiners.ToList() | beam.Map(_write_pickle, str(tmp_path / "transformed.pkl"))
    found = pickle.loads((tmp_path / "transformed.pkl").read_bytes())
    assert set(found[0]) == {"age_xf", "income_xf", "plan_xf", "will_churn"}
    assert [o["will_churn"] for o in found] == [r["churned"] for r in rows]
    assert {o["plan_xf"] for o in found} == {0, 1, 2}
    rules = FeatureRules.from_schema(Path(schema_path))
    assert rules.required == frozenset({"age", "plan"})
    assert parse_instance({"age": 33, "plan": "pro"}, rules).features == {"age": 33, "plan": "pro"}
    with pytest.raises(InstanceError, match="unknown feature 'churned'"):
        parse_instance({"age": 33, "plan": "pro", "churned": 1}, rules)
    with pytest.raises(InstanceError, match="age"):
        parse_instance({"age": 300, "plan": "pro"}, rules)


def test_a_component_reads_the_contract_its_custom_config_carries_where_the_file_is_not(small, monkeypatch):
    """On Kubeflow the pipeline's contract file is not in the component's container: its text travels."""
    path, _, _ = small
    carried = PipelineConfig(contract_path=path).contract_config()
    path.rename(path.with_suffix(".gone"))  # the file is not where the pipeline was compiled
    monkeypatch.setenv(features.PATH_VARIABLE, str(features.DEFAULT_PATH))  # the container's own: the taxi's
    found = features.activate_from(carried)
    assert found.model_name == "churn" and features.active().model_name == "churn"
    assert features.active_path() != str(path) and Path(features.active_path()).read_text() == SMALL
    monkeypatch.setenv(features.PATH_VARIABLE, str(features.DEFAULT_PATH))
    taxi_carried = PipelineConfig().contract_config()
    assert features.activate_from(taxi_carried).model_name == "taxi"
    assert features.active_path() == str(features.DEFAULT_PATH)  # the same text: the active file stays


def test_every_component_that_reads_the_contract_when_it_runs_is_given_its_text(small, tmp_path):
    """DataGate, Transform, Trainer, InfraCheck and ModelCard run where the project's file may not be: each carries the text."""
    import json

    from pipeline import pipeline
    from pipeline.components.model_card import SETTINGS_KEY

    path, spans, _ = small
    config = PipelineConfig(contract_path=path, home=tmp_path / "home", spans_root=spans)
    components = {c.id: c for c in pipeline.create_pipeline(config).components}
    carried = {
        "DataGate": json.loads(components["DataGate"].exec_properties["contract"]),
        "Transform": json.loads(components["Transform"].exec_properties["custom_config"]),
        "Trainer": json.loads(components["Trainer"].exec_properties["custom_config"]),
        "InfraCheck": json.loads(components["InfraCheck"].exec_properties["contract"]),
        "ModelCard": json.loads(components["ModelCard"].exec_properties[SETTINGS_KEY])["contract"],
    }
    assert {name: entries[features.TEXT_KEY] for name, entries in carried.items()} == dict.fromkeys(carried, SMALL)
