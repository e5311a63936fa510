"""The multi-class label (contract kind "classes"): the contract's checks, the label as a class
index in preprocessing, and a softmax model whose signatures answer every class."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import tensorflow as tf

from models import contract, features, label_metrics, preprocessing, signatures
from tests import wine


@pytest.fixture()
def wine_contract(tmp_path, monkeypatch):
    path = tmp_path / "wine.toml"
    path.write_text(wine.CONTRACT)
    monkeypatch.setenv(features.PATH_VARIABLE, str(path))
    return path


def test_the_classes_kind_parses_and_its_classes_are_the_label_columns_domain(wine_contract):
    c = features.active()
    label = c.label
    assert (label.kind, label.column, label.classes, label.label_only) == ("classes", "cultivar", tuple(wine.CULTIVARS), ("cultivar",))
    assert label.multiclass and label.class_names == tuple(wine.CULTIVARS) and label.reads == ("cultivar",)
    assert c.column("cultivar").values == tuple(wine.CULTIVARS)  # the schema's domain: DataGate refuses other values
    assert "cultivar" not in c.serving_features
    assert [label.of_row({"cultivar": v}) for v in ("barolo", " barbera", "grignolino")] == [0, 2, 1]
    with pytest.raises(contract.OutsideClasses, match="cultivar 'merlot' is not one of the classes"):
        label.of_row({"cultivar": "merlot"})
    assert label_metrics.of(label) is label_metrics.MULTICLASS
    assert label_metrics.MULTICLASS.gated("binary_accuracy") == "sparse_categorical_accuracy"
    assert label_metrics.MULTICLASS.gated("auc") is None and "auc" in label_metrics.BINARY_ONLY


def test_int_classes_are_indexed_and_bound_the_columns_range(tmp_path):
    text = wine.CONTRACT.replace('cultivar = {type = "string"}', 'cultivar = {type = "int"}').replace(
        'classes = ["barolo", "grignolino", "barbera"]', "classes = [3, 1, 2]")
    path = tmp_path / "ints.toml"
    path.write_text(text)
    label = contract.load(path).label
    assert [label.index(v) for v in (3, 1, 2)] == [0, 1, 2] and label.class_names == ("3", "1", "2")
    assert (contract.load(path).column("cultivar").min, contract.load(path).column("cultivar").max) == (1, 3)
    for outside in (4, 1.5, "1", True):
        with pytest.raises(contract.OutsideClasses):
            label.index(outside)


@pytest.mark.parametrize("old, new, key", [
    ('classes = ["barolo", "grignolino", "barbera"]', 'classes = ["barolo", "barbera"]', "label.classes"),
    ('classes = ["barolo", "grignolino", "barbera"]', 'classes = ["barolo", "barbera", "barolo"]', "label.classes"),
    ('classes = ["barolo", "grignolino", "barbera"]', 'classes = ["barolo", "barbera", 3]', "label.classes"),
    ('column = "cultivar"', 'column = "grape"', "label.column"),
    ('column = "cultivar"', 'column = "hue"', "label.column"),
    ('classes = ["barolo", "grignolino", "barbera"]', 'classes = "barolo"', "label.classes"),
    ('classes = ["barolo", "grignolino", "barbera"]', 'positive = "barolo"', "label.positive"),
    ('cultivar = {type = "string"}', 'cultivar = {type = "string", values = ["barolo"]}', "columns.cultivar"),
    ('cultivar = {type = "string"}', 'cultivar = {type = "int"}', "label.classes"),
])
def test_a_bad_classes_label_is_one_line_naming_its_key(tmp_path, old, new, key):
    assert old in wine.CONTRACT
    path = tmp_path / "bad.toml"
    path.write_text(wine.CONTRACT.replace(old, new, 1))
    with pytest.raises(contract.ContractError) as raised:
        contract.load(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message


def test_non_consecutive_int_classes_are_refused(tmp_path):
    path = tmp_path / "gaps.toml"
    path.write_text(wine.CONTRACT.replace('cultivar = {type = "string"}', 'cultivar = {type = "int"}').replace(
        'classes = ["barolo", "grignolino", "barbera"]', "classes = [1, 2, 5]"))
    with pytest.raises(contract.ContractError, match=r"label\.classes: expected consecutive integers"):
        contract.load(path)


def test_the_label_is_the_class_index_and_a_value_outside_is_minus_one(wine_contract):
    found = preprocessing.label(features.active(), {"cultivar": tf.constant([b"barbera", b" barolo ", b"grignolino", b"merlot"])})
    assert found.dtype == tf.int64 and found.numpy().tolist() == [2, 0, 1, -1]


def test_binary_signatures_are_unchanged():
    out = signatures.graph_outputs(signatures.DEFAULT, tf.constant([0.2, 0.7]), ("0", "1"))
    assert set(out) == {"probability", "predicted_class"} and out["predicted_class"].numpy().tolist() == [0, 1]
    assert signatures.answer(signatures.CLASSIFICATION, {"probability": 0.75, "predicted_class": 1}) == {
        "classes": ["0", "1"], "scores": [0.25, 0.75]}


@pytest.fixture()
def exported(wine_contract, tmp_path):
    """A softmax model trained a few steps on wine rows through the real preprocessing_fn, exported."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from models import model
    from models.examples import to_example
    from pipeline.configs import PipelineConfig
    from schema import derive
    from tests.tft_helpers import _write_pickle

    data = wine.rows(copies=2)
    wine.write_spans(tmp_path / "spans", data, spans=1)
    schema = derive.derive(tmp_path / "spans")
    typed = {"int": int, "float": float, "string": str.encode}
    instances = [{k: [] if v == "" else [typed[features.active().column(k).type](v)] for k, v in row.items()} for row in data]
    metadata = dataset_metadata.DatasetMetadata(schema)
    out = tmp_path / "tft"
    with beam.Pipeline(options=PipelineOptions(PipelineConfig().beam_args())) as pipeline:
        with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
            (transformed, _), transform_fn = (pipeline | beam.Create(instances), metadata) | tft_beam.AnalyzeAndTransformDataset(
                preprocessing.preprocessing_fn)
            transform_fn | tft_beam.WriteTransformFn(str(out))
            transformed | beam.combiners.ToList() | beam.Map(_write_pickle, str(tmp_path / "t.pkl"))
    metadata_io.write_metadata(metadata, str(out / tft.TFTransformOutput.RAW_METADATA_DIR))
    outputs, tft_output = pickle.loads((tmp_path / "t.pkl").read_bytes()), tft.TFTransformOutput(str(out))
    keras_model = model.build_model(model.categorical_sizes(tft_output), model.HParams(batch_size=32))
    x = {k: np.array([o[k] for o in outputs]) for k in model.model_inputs()}
    y = np.array([o["cultivar_id"] for o in outputs])
    assert sorted(set(y.tolist())) == [0, 1, 2] and y.tolist() == [wine.CULTIVARS.index(r["cultivar"]) for r in data]
    keras_model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    path = str(tmp_path / "serving")
    model.export(keras_model, tft_output, path)
    serving = features.active().serving_features
    batch = [to_example({k: r[k] for k in serving}, serving).SerializeToString() for r in data[:64]]
    return path, batch, data[:64]


def test_the_exported_model_answers_every_class(exported):
    from models.instances import Instance
    from models.saved_model import LoadedModel

    path, batch, rows = exported
    defs = signatures.signature_defs(path)
    assert set(defs) & set(signatures.METHODS) == {"serving_default", "classification"}  # no regression
    assert set(defs["serving_default"].outputs) == {"probabilities", "predicted_class"}
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](examples=tf.constant(batch))
    probabilities = served["probabilities"].numpy()
    assert probabilities.shape == (64, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert served["predicted_class"].numpy().tolist() == probabilities.argmax(axis=1).tolist()
    classified = loaded.signatures["classification"](inputs=tf.constant(batch))
    assert classified["classes"].numpy().tolist() == [[c.encode() for c in wine.CULTIVARS]] * 64
    model = LoadedModel.load(path, "1")
    answers = model.predict([Instance(e, {}) for e in batch])
    assert [a["predicted_class"] for a in answers] == served["predicted_class"].numpy().tolist()
    derived = [signatures.answer(signatures.CLASSIFICATION, a) for a in answers]
    assert np.array([d["scores"] for d in derived], dtype=np.float32).tobytes() == classified["scores"].numpy().tobytes()
    assert derived[0]["classes"] == wine.CULTIVARS
    right = sum(a["predicted_class"] == wine.CULTIVARS.index(r["cultivar"]) for a, r in zip(answers, rows))
    assert right > 64 / 3  # better than chance after 3 epochs
    with pytest.raises(signatures.SignatureError, match="'regression' not found"):
        signatures.resolve("regress", None, model.served)
