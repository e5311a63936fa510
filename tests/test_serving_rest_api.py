"""TF Serving's REST API, as its clients send it, against a real `conveyor serve` process: row and
columnar formats, named and bare inputs, signatures, :classify and :regress, versions and labels,
metadata and status. Every answer is compared with what the SavedModel itself answers."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
import tensorflow as tf

from models import features
from models.instances import from_row, to_example
from pipeline import versions
from serving import request_log
from tests.serving_helpers import Serve, copy_home

MODEL = "taxi"


@pytest.fixture(scope="module")
def served(small_run, tmp_path_factory):
    config = copy_home(small_run, tmp_path_factory.mktemp("rest") / "home")
    with Serve(config.home) as server:
        server.config = config
        server.version = versions.serving_version(config.serving_root)
        yield server


@pytest.fixture(scope="module")
def saved_model(served):
    return tf.saved_model.load(str(served.config.serving_root / served.version))


@pytest.fixture(scope="module")
def rows(shipped_rows):
    return [from_row(r) for r in shipped_rows[:6]]


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def _expected(saved_model, signature: str, rows: list[dict]) -> dict[str, list]:
    """What `signature` of the SavedModel answers for `rows`, as JSON would carry it."""
    name = "examples" if signature == "serving_default" else "inputs"
    outputs = saved_model.signatures[signature](**{name: tf.constant([to_example(r) for r in rows])})
    return {key: [_plain(v) for v in value.numpy().tolist()] for key, value in outputs.items()}


def _plain(value):
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


def _post(client, path: str, body) -> dict:
    response = client.post(path, content=json.dumps(body))
    assert response.status_code == 200, (path, response.text[:500])
    return response.json()


def test_every_predict_format_answers_what_the_saved_model_answers(served, saved_model, rows):
    want = _expected(saved_model, "serving_default", rows)
    per_row = [{"probability": p, "predicted_class": c} for p, c in zip(want["probability"], want["predicted_class"])]
    serialized = [to_example(r) for r in rows]
    columns = {name: [r.get(name) for r in rows] for name in features.active().serving_features if any(name in r for r in rows)}  # null: missing
    predict = f"/v1/models/{MODEL}:predict"
    with served.client() as client:
        row_forms = [
            {"instances": rows},  # raw features (Conveyor's own form)
            {"instances": [_b64(s) for s in serialized]},  # bare b64 inputs
            {"instances": [{"examples": _b64(s)} for s in serialized]},  # the named input
            {"signature_name": "serving_default", "instances": [_b64(s) for s in serialized]},
        ]
        for body in row_forms:
            assert _post(client, predict, body) == {"predictions": per_row}, body
        columnar_forms = [
            {"inputs": [_b64(s) for s in serialized]},
            {"inputs": {"examples": [_b64(s) for s in serialized]}},
            {"inputs": columns},  # raw features by column
        ]
        for body in columnar_forms:
            assert _post(client, predict, body) == {"outputs": want}, body
        classified = _expected(saved_model, "classification", rows)
        assert _post(client, predict, {"signature_name": "classification", "instances": [{"inputs": _b64(s)} for s in serialized]}) == {
            "predictions": [{"classes": c, "scores": s} for c, s in zip(classified["classes"], classified["scores"])]}
        regressed = _expected(saved_model, "regression", rows)["outputs"]
        assert _post(client, predict, {"signature_name": "regression", "instances": rows}) == {"predictions": regressed}
        assert _post(client, predict, {"signature_name": "regression", "inputs": {"inputs": [_b64(s) for s in serialized]}}) == {
            "outputs": regressed}


def test_classify_and_regress_answer_through_their_signatures(served, saved_model, rows):
    classified = _expected(saved_model, "classification", rows)
    result = [[list(pair) for pair in zip(c, s)] for c, s in zip(classified["classes"], classified["scores"])]
    regressed = _expected(saved_model, "regression", rows)["outputs"]
    common = {"payment_type": rows[0]["payment_type"], "trip_start_month": rows[0]["trip_start_month"]}
    own = [{k: v for k, v in r.items() if k not in common} for r in rows]
    as_lists = [{k: [v] for k, v in r.items()} for r in rows]  # TF Serving's example JSON: lists of values
    for r in as_lists:
        r["payment_type"] = _b64(r["payment_type"][0].encode())  # bytes may come as b64
        r["tips"] = [1.5]  # a feature the model does not read (the label's source), as TFX's requests carry
    with served.client() as client:
        for path in (f"/v1/models/{MODEL}:classify", f"/v1/models/{MODEL}/versions/{served.version}:classify",
                     f"/v1/models/{MODEL}/labels/stable:classify"):
            assert _post(client, path, {"examples": rows}) == {"result": result}, path
        assert _post(client, f"/v1/models/{MODEL}:classify", {"signature_name": "classification", "examples": as_lists}) == {"result": result}
        if all(r[k] == v for r in rows for k, v in common.items()):
            assert _post(client, f"/v1/models/{MODEL}:classify", {"context": common, "examples": own}) == {"result": result}
        assert _post(client, f"/v1/models/{MODEL}:regress", {"examples": rows}) == {"result": regressed}
        assert _post(client, f"/V1/Models/{MODEL}/Labels/stable:REGRESS", {"examples": as_lists}) == {"result": regressed}


def test_every_answer_of_every_api_is_in_the_request_log(served, rows):
    ids = {"predict": "rest-log-p", "classify": "rest-log-c", "regress": "rest-log-r"}
    bodies = {"predict": {"instances": rows[:2]}, "classify": {"examples": rows[:2]}, "regress": {"examples": rows[:2]}}
    with served.client() as client:
        for method, request_id in ids.items():
            response = client.post(f"/v1/models/{MODEL}:{method}", json=bodies[method], headers={"X-Request-Id": request_id})
            assert response.status_code == 200 and response.headers["X-Model-Version"] == served.version
    now = datetime.now(timezone.utc)
    window = request_log.read(served.config.request_log_root, now - timedelta(hours=1), now + timedelta(minutes=1))
    for request_id in ids.values():
        logged = sorted((r["index"], r["features"]["fare"]) for r in window.records if r["request_id"] == request_id)
        assert logged == [(0, rows[0]["fare"]), (1, rows[1]["fare"])]


def test_versions_labels_metadata_and_status(served):
    version = served.version
    with served.client() as client:
        status = client.get(f"/v1/models/{MODEL}").json()
        assert status.pop("labels") == {"stable": version}  # the model's own status names its labels (rollouts add one)
        assert status == {"model_version_status": [
            {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
        for path in (f"/v1/models/{MODEL}/versions/{version}", f"/v1/models/{MODEL}/labels/stable",
                     f"/v1/models/{MODEL}/versions/0{version}"):
            assert client.get(path).json() == status, path
        for path in (f"/v1/models/{MODEL}/metadata", f"/v1/models/{MODEL}/labels/stable/metadata",
                     f"/v1/models/{MODEL}/versions/{version}/metadata"):
            metadata = client.get(path).json()
            assert metadata["model_spec"] == {"name": MODEL, "signature_name": "", "version": version}
            defs = metadata["metadata"]["signature_def"]["signature_def"]
            assert {name: d["method_name"] for name, d in defs.items()} == {
                "serving_default": "tensorflow/serving/predict", "classification": "tensorflow/serving/classify",
                "regression": "tensorflow/serving/regress"}
            examples = defs["serving_default"]["inputs"]["examples"]
            assert examples["dtype"] == "DT_STRING" and examples["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
            assert set(defs["classification"]["outputs"]) == {"classes", "scores"}


@pytest.mark.parametrize("path, body, status, reason", [
    (":predict", {"instances": [{}], "inputs": [{}]}, 400, "only one of 'inputs' (columnar format) or 'instances'"),
    (":predict", {"signature_name": 3, "instances": [{}]}, 400, "'signature_name' must be a string"),
    (":predict", {"other": []}, 400, "missing 'inputs' (columnar format) or 'instances'"),
    (":predict", {"instances": []}, 400, "'instances' must be a non-empty list"),
    (":predict", {"inputs": {"examples": []}}, 400, "'inputs' must be a non-empty list"),
    (":predict", {"inputs": {"fare": [1.0], "trip_miles": [1.0, 2.0]}}, 400, "different lengths"),
    (":predict", {"instances": [{"examples": "not b64"}]}, 400, "input 'examples' must be {'b64'"),
    (":predict", {"instances": [{"examples": {"b64": "AA=="}, "fare": 1.0}]}, 400, "the signature has one input, 'examples'"),
    (":predict", {"signature_name": "transform_features", "instances": [{}]}, 400, "'transform_features' not found (it is the Evaluator's"),
    (":classify", {"signature_name": "serving_default", "examples": [{}]}, 400,
     "signature 'serving_default' is a tensorflow/serving/predict signature; :classify needs a tensorflow/serving/classify one"),
    (":regress", {"signature_name": "classification", "examples": [{}]}, 400, ":regress needs a tensorflow/serving/regress one"),
    (":classify", {"instances": [{}]}, 400, "key 'examples' is expected and was not found"),
    (":classify", {"examples": [{"fare": [1.0, 2.0]}]}, 400, "feature 'fare' has 2 values"),
    (":classify", {"examples": [{"fare": 1.0}], "context": [1]}, 400, "'context' must be a JSON object"),
    (":classify", {"examples": [{"fare": {"b64": "!!"}}]}, 400, "'b64' is not base64"),
    (":regress", {"examples": [{"fare": 1.0}]}, 400, "missing required feature"),
    ("/labels/canary:predict", {"instances": [{}]}, 404, "unknown version label 'canary'"),
    ("/versions/1/labels/stable:predict", {"instances": [{}]}, 404, "no route"),
    (":generate", {"instances": [{}]}, 404, "no method ':generate'"),
])
def test_bad_requests_get_tf_servings_error_shape_naming_the_problem(served, path, body, status, reason):
    with served.client() as client:
        response = client.post(f"/v1/models/{MODEL}{path}", content=json.dumps(body), headers={"X-Request-Id": "bad"})
    assert response.status_code == status, response.text
    assert response.json() == {"error": response.json()["error"], "request_id": "bad"}
    assert reason in response.json()["error"], response.text
