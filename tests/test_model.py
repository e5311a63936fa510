"""The model builds, trains a step, exports, and its serving signature answers raw tf.Examples."""
import json

import numpy as np
import pytest
import tensorflow as tf

from models import features, model
from models.examples import to_example
from tests import taxi
from tests.tft_helpers import transform_rows


def _example(row: dict[str, str], keys) -> bytes:
    return to_example(row, keys).SerializeToString()


@pytest.fixture(scope="module")
def export_dir(shipped_rows, tmp_path_factory):
    """The rows, the trained Keras model, its transformed rows and the folder `model.export` wrote."""
    rows = shipped_rows[:256]
    outputs, tft_output = transform_rows(rows, tmp_path_factory.mktemp("tft"))
    hparams = model.HParams(batch_size=32)
    keras_model = model.build_model(model.categorical_sizes(tft_output), hparams)
    x = {k: np.array([o[k] for o in outputs]) for k in model.model_inputs()}
    y = np.array([o[features.active().label.name] for o in outputs], dtype="float32")
    before = keras_model.get_weights()
    keras_model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, keras_model.get_weights()))
    path = str(tmp_path_factory.mktemp("model") / "serving")
    model.export(keras_model, tft_output, path)
    return rows, keras_model, outputs, path


@pytest.fixture(scope="module")
def exported(export_dir):
    rows, keras_model, outputs, path = export_dir
    return rows, keras_model, outputs, tf.saved_model.load(path)


def test_hparams_from_custom_config_ignores_unknown_keys():
    hp = model.HParams.from_config({"learning_rate": 0.01, "hidden_units": [8], "seed": 3})
    assert hp.learning_rate == 0.01 and hp.hidden_units == (8,)


def test_serving_signature_answers_serialized_examples_with_probabilities(exported):
    rows, _, _, loaded = exported
    serve = loaded.signatures["serving_default"]
    batch = tf.constant([_example(r, features.active().serving_features) for r in rows[:16]])
    result = serve(examples=batch)
    probability = result[model.PROBABILITY_KEY].numpy()
    assert probability.shape == (16,)
    assert np.all((probability >= 0) & (probability <= 1))
    np.testing.assert_array_equal(result[model.CLASS_KEY].numpy(), (probability > 0.5).astype(int))


def test_serving_matches_the_keras_model_on_transformed_features(exported):
    rows, keras_model, outputs, loaded = exported
    batch = tf.constant([_example(r, features.active().serving_features) for r in rows[:8]])
    served = loaded.signatures["serving_default"](examples=batch)[model.PROBABILITY_KEY].numpy()
    direct = keras_model({k: np.array([o[k] for o in outputs[:8]]) for k in model.model_inputs()}).numpy().reshape(-1)
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)


def test_serving_works_without_optional_features(exported):
    rows, _, _, loaded = exported
    row = {k: v for k, v in rows[0].items() if k not in ("company", "dropoff_latitude", "dropoff_census_tract")}
    result = loaded.signatures["serving_default"](examples=tf.constant([_example(row, features.active().serving_features)]))
    assert 0 <= float(result[model.PROBABILITY_KEY][0]) <= 1


def test_transform_signature_computes_the_label_in_graph(exported):
    rows, _, outputs, loaded = exported
    batch = tf.constant([_example(r, features.active().csv_columns) for r in rows[:8]])
    transformed = loaded.signatures["transform_features"](examples=batch)
    assert list(transformed[features.active().label.name].numpy()) == [o[features.active().label.name] for o in outputs[:8]]


def test_hparams_are_json_serialisable():
    from dataclasses import asdict

    assert json.loads(json.dumps(asdict(model.HParams())))["hidden_units"] == [64, 32]


def test_to_example_names_the_feature_with_a_wrong_type():
    with pytest.raises(ValueError, match="'trip_start_hour' must be int"):
        to_example({"trip_start_hour": "noon"})
    with pytest.raises(ValueError, match="'fare' must be float"):
        to_example({"fare": "abc"})
    assert set(to_example({"fare": "1.5", "company": ""}).features.feature) == {"fare"}


def _saved_object_names(path: str) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(f"{path}/saved_model.pb", "rb") as handle:
        saved.ParseFromString(handle.read())
    graph = saved.meta_graphs[0].object_graph_def
    return {child.local_name for node in graph.nodes for child in node.children}


def test_the_export_carries_the_transform_assets_and_no_keras_layer_traces(export_dir):
    path = export_dir[3]
    assert set(taxi.VOCAB_FEATURES) <= set(tf.io.gfile.listdir(f"{path}/assets"))
    names = _saved_object_names(path)
    assert {"serve_tf_examples", "transform_features", "tft_layer"} <= names
    assert "keras_api" not in names  # tf_keras's extra traces of the transform layer (save_traces=False)


def test_classification_and_regression_signatures_answer_what_the_server_derives(export_dir):
    """TF Serving's :classify and :regress need signatures of those methods; the server answers
    them from serving_default's probability (models/signatures.py): the same bytes."""
    from models import signatures

    rows, _, _, path = export_dir
    defs = signatures.signature_defs(path)
    assert {name: defs[name].method_name for name in signatures.METHODS} == signatures.METHODS
    assert list(defs["classification"].inputs) == ["inputs"] and set(defs["classification"].outputs) == {"classes", "scores"}
    assert list(defs["regression"].outputs) == ["outputs"]
    loaded = tf.saved_model.load(path)  # the fingerprint was rewritten with the graph: it still loads
    batch = tf.constant([_example(r, features.active().serving_features) for r in rows[:64]])
    served = loaded.signatures["serving_default"](examples=batch)
    classified = loaded.signatures["classification"](inputs=batch)
    regressed = loaded.signatures["regression"](inputs=batch)
    derived = [signatures.answer(name, {model.PROBABILITY_KEY: p, model.CLASS_KEY: c}) for name in ("classification", "regression")
               for p, c in zip(served[model.PROBABILITY_KEY].numpy().tolist(), served[model.CLASS_KEY].numpy().tolist())]
    scores = np.array([d["scores"] for d in derived[:64]], dtype=np.float32)
    assert scores.tobytes() == classified["scores"].numpy().tobytes()
    assert classified["classes"].numpy().tolist() == [[b"0", b"1"]] * 64
    assert np.array([d["outputs"] for d in derived[64:]], dtype=np.float32).tobytes() == regressed["outputs"].numpy().tobytes()
    fingerprint = tf.saved_model.experimental.read_fingerprint(path)
    assert fingerprint.saved_model_checksum != 0


def test_warmup_requests_carry_real_sendable_examples(shipped_rows, tmp_path):
    """The export's warmup requests (TF Serving's assets.extra file): eval examples with every
    required feature, without the label's source, read back as written."""
    from models import warmup

    split = tmp_path / "Split-eval"
    split.mkdir()
    rows = shipped_rows[:10]
    rows[0] = {**rows[0], "fare": ""}  # without a required feature: not sendable
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for row in rows:
            writer.write(_example(row, features.active().csv_columns))
    found = warmup.eval_examples([str(split / "*")], required=["fare", "trip_miles"], count=5)
    assert len(found) == 5
    assert all("tips" not in tf.train.Example.FromString(s).features.feature for s in found)
    assert tf.train.Example.FromString(found[0]) == tf.train.Example.FromString(_example(rows[1], features.active().serving_features))
    assert warmup.write(tmp_path / "model", found) == 5
    assert warmup.read(tmp_path / "model") == found and warmup.read(tmp_path / "elsewhere") == []
