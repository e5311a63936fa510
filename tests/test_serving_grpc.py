"""TF Serving's gRPC API against a real `conveyor serve --grpc-port 0` process, driven by TFX's own
TensorFlowServingClient (with requests made by TFX's own request builder) and by the
tensorflow-serving-api stubs; answers compared with the SavedModel's, logged like REST's."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tfx.components.infra_validator import request_builder
from tfx.components.infra_validator.model_server_clients.tensorflow_serving_client import TensorFlowServingClient
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts

from models import examples as model_examples
from models import features
from models.instances import from_row, to_example
from pipeline import versions
from serving import request_log
from tests.serving_helpers import Serve, copy_home, metric

MODEL = "taxi"
TIMEOUT = 30  # every call has a deadline: a hang fails


@pytest.fixture(scope="module")
def served(small_run, tmp_path_factory):
    config = copy_home(small_run, tmp_path_factory.mktemp("grpc") / "home")
    with Serve(config.home, args=("--grpc-port", "0")) as server:
        server.config = config
        server.version = versions.serving_version(config.serving_root)
        server.grpc = re.search(r"gRPC at (\S+)", server.first_line).group(1)
        with grpc.insecure_channel(server.grpc) as channel:
            server.predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            server.models = model_service_pb2_grpc.ModelServiceStub(channel)
            yield server


@pytest.fixture(scope="module")
def saved_model(served):
    return tf.saved_model.load(str(served.config.serving_root / served.version))


@pytest.fixture(scope="module")
def rows(shipped_rows):
    return [from_row(r) for r in shipped_rows[:5]]


def _spec(**kwargs) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=MODEL, **kwargs)


def _predict_request(rows, name="examples", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=_spec(**spec))
    request.inputs[name].CopyFrom(tf.make_tensor_proto([to_example(r) for r in rows]))
    return request


def _error(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=TIMEOUT, **kwargs)
    return raised.value


def test_tfxs_own_client_waits_for_the_model_and_sends_the_requests_tfx_builds(served, shipped_rows, tmp_path):
    """TFX's InfraValidator path: its request builder reads the SavedModel's signatures and real
    examples (every column, the label's `tips` included), its client waits for AVAILABLE and sends."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "Format-Serving").symlink_to(served.config.serving_root / served.version)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = json.dumps(["eval"])
    (tmp_path / "examples" / "Split-eval").mkdir(parents=True)
    records = [model_examples.to_example(row, features.active().csv_columns).SerializeToString() for row in shipped_rows[:8]]
    with tf.io.TFRecordWriter(str(tmp_path / "examples" / "Split-eval" / "data.gz"), options="GZIP") as writer:
        for record in records:  # as ExampleGen writes them
            writer.write(record)
    spec = infra_validator_pb2.RequestSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
            signature_names=["serving_default", "classification", "regression"]),
        split_name="eval", num_examples=8)
    requests = request_builder.build_requests(MODEL, model, examples, spec)
    kinds = {type(r).__name__ for r in requests}
    assert kinds == {"PredictRequest", "ClassificationRequest", "RegressionRequest"} and len(requests) == 24
    client = TensorFlowServingClient(served.grpc, MODEL)
    client.WaitUntilModelLoaded(deadline=time.time() + TIMEOUT, polling_interval_sec=1)
    client.SendRequests(requests)  # raises ValidationFailed on any error
    with served.client() as http:
        scraped = http.get("/metrics").text
    for method in ("Predict", "Classify", "Regress"):
        assert metric(scraped, "conveyor_grpc_requests_total", method=method, code="OK", version=served.version) >= 8
    assert metric(scraped, "conveyor_grpc_requests_total", method="GetModelStatus", code="OK") >= 1


def test_the_stubs_get_what_the_saved_model_answers(served, saved_model, rows):
    batch = tf.constant([to_example(r) for r in rows])
    want = saved_model.signatures["serving_default"](examples=batch)
    classified = saved_model.signatures["classification"](inputs=batch)
    regressed = saved_model.signatures["regression"](inputs=batch)
    for spec in ({}, {"signature_name": "serving_default"}, {"version_label": "stable"}):
        response, call = served.predictions.Predict.with_call(_predict_request(rows, **spec), timeout=TIMEOUT)
        assert tf.make_ndarray(response.outputs["probability"]).tobytes() == want["probability"].numpy().tobytes()
        assert tf.make_ndarray(response.outputs["predicted_class"]).tolist() == want["predicted_class"].numpy().tolist()
        assert response.model_spec.version.value == int(served.version) and response.model_spec.signature_name == "serving_default"
        assert dict(call.trailing_metadata())["x-model-version"] == served.version
    request = _predict_request(rows, version={"value": int(served.version)})
    request.output_filter.append("probability")
    assert list(served.predictions.Predict(request, timeout=TIMEOUT).outputs) == ["probability"]
    by_predict = served.predictions.Predict(_predict_request(rows, "inputs", signature_name="classification"), timeout=TIMEOUT)
    assert tf.make_ndarray(by_predict.outputs["scores"]).tobytes() == classified["scores"].numpy().tobytes()
    assert tf.make_ndarray(by_predict.outputs["classes"]).tolist() == classified["classes"].numpy().tolist()

    classify = classification_pb2.ClassificationRequest(model_spec=_spec())
    context = {"payment_type": rows[0]["payment_type"]}
    for row in rows:
        example = classify.input.example_list_with_context.examples.add()
        example.ParseFromString(to_example({k: v for k, v in row.items() if k != "payment_type" or v != context["payment_type"]}))
    classify.input.example_list_with_context.context.ParseFromString(to_example(context))
    result = served.predictions.Classify(classify, timeout=TIMEOUT).result
    scores = [[c.score for c in found.classes] for found in result.classifications]
    assert tf.constant(scores, tf.float32).numpy().tobytes() == classified["scores"].numpy().tobytes()
    assert {c.label for found in result.classifications for c in found.classes} == {"0", "1"}

    regress = regression_pb2.RegressionRequest(model_spec=_spec(signature_name="regression"))
    for row in rows:
        regress.input.example_list.examples.add().ParseFromString(to_example(row))
    values = [r.value for r in served.predictions.Regress(regress, timeout=TIMEOUT).result.regressions]
    assert tf.constant(values, tf.float32).numpy().tobytes() == regressed["outputs"].numpy().tobytes()


def test_metadata_status_and_the_request_log(served, rows):
    metadata = served.predictions.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=_spec(), metadata_field=["signature_def"]), timeout=TIMEOUT)
    found = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(found)
    assert {name: d.method_name for name, d in found.signature_def.items()} == {
        "serving_default": "tensorflow/serving/predict", "classification": "tensorflow/serving/classify",
        "regression": "tensorflow/serving/regress"}
    status = served.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=_spec()), timeout=TIMEOUT)
    [only] = status.model_version_status
    assert (only.version, only.state, only.status.error_code) == (int(served.version), get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    labelled = served.models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=_spec(version_label="stable")), timeout=TIMEOUT)
    assert labelled == status
    served.predictions.Predict(_predict_request(rows[:2]), metadata=(("x-request-id", "grpc-logged"),), timeout=TIMEOUT)
    now = datetime.now(timezone.utc)
    window = request_log.read(served.config.request_log_root, now - timedelta(hours=1), now + timedelta(minutes=1))
    logged = sorted((r["index"], r["model_version"]) for r in window.records if r["request_id"] == "grpc-logged")
    assert logged == [(0, served.version), (1, served.version)]


def test_bad_calls_get_the_status_that_names_the_problem(served, rows):
    stub = served.predictions
    good = _predict_request(rows[:1])
    wrong_dtype = predict_pb2.PredictRequest(model_spec=_spec())
    wrong_dtype.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0]))
    wrong_shape = predict_pb2.PredictRequest(model_spec=_spec())
    wrong_shape.inputs["examples"].CopyFrom(tf.make_tensor_proto([[to_example(rows[0])]]))
    filtered = _predict_request(rows[:1])
    filtered.output_filter.append("logits")
    empty_classify = classification_pb2.ClassificationRequest(model_spec=_spec())
    bad_example = classification_pb2.ClassificationRequest(model_spec=_spec())
    bad_example.input.example_list.examples.add().features.feature["fare"].float_list.value.extend([1.0, 2.0])
    cases = [
        (stub.Predict, predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="other")), "NOT_FOUND", "model 'other' not found"),
        (stub.Predict, _predict_request(rows[:1], version={"value": 1}), "NOT_FOUND", "not a pushed version"),
        (stub.Predict, _predict_request(rows[:1], version_label="canary"), "NOT_FOUND", "unknown version label 'canary'"),
        (stub.Predict, _predict_request(rows[:1], "inputs"), "INVALID_ARGUMENT", "'inputs' is not in the signature"),
        (stub.Predict, wrong_dtype, "INVALID_ARGUMENT", "must be a DT_STRING tensor"),
        (stub.Predict, wrong_shape, "INVALID_ARGUMENT", "must have shape [N]"),
        (stub.Predict, filtered, "INVALID_ARGUMENT", "output_filter names 'logits'"),
        (stub.Predict, _predict_request(rows[:1] * 257), "RESOURCE_EXHAUSTED", "batch of 257 instances exceeds the limit of 256"),
        (stub.Predict, _predict_request(rows[:1], signature_name="transform_features"), "INVALID_ARGUMENT", "'transform_features' not found"),
        (stub.Classify, empty_classify, "INVALID_ARGUMENT", "holds no example_list"),
        (stub.Classify, bad_example, "INVALID_ARGUMENT", "'fare' has 2 values"),
        (stub.Regress, regression_pb2.RegressionRequest(model_spec=_spec(signature_name="serving_default")), "INVALID_ARGUMENT",
         ":regress needs a tensorflow/serving/regress one"),
        (stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(model_spec=_spec()), "INVALID_ARGUMENT",
         "at least one metadata_field"),
        (stub.MultiInference, inference_pb2.MultiInferenceRequest(), "UNIMPLEMENTED", ""),
    ]
    for call, request, code, reason in cases:
        error = _error(call, request, metadata=(("x-request-id", "grpc-bad"),))
        assert (error.code().name, reason in (error.details() or "")) == (code, True), (code, reason, error.details())
        if code != "UNIMPLEMENTED":
            assert dict(error.trailing_metadata())["x-request-id"] == "grpc-bad"
    assert _error(stub.Predict, good, metadata=(("x-request-id", "a b"),)).code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.Predict(good, metadata=(("x-request-id", "grpc-once"),), timeout=TIMEOUT)
    with served.client() as http:  # one id space for both APIs: labels are joined on it
        assert http.post(f"/v1/models/{MODEL}:predict", json={"instances": rows[:1]}, headers={"X-Request-Id": "grpc-once"}).status_code == 409
        assert http.post(f"/v1/models/{MODEL}:predict", json={"instances": rows[:1]}, headers={"X-Request-Id": "rest-once"}).status_code == 200
    assert _error(stub.Predict, good, metadata=(("x-request-id", "rest-once"),)).code() == grpc.StatusCode.ALREADY_EXISTS
    huge = predict_pb2.PredictRequest(model_spec=_spec())
    huge.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"x" * 1_100_000]))
    assert _error(stub.Predict, huge).code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # over max_request_bytes
    assert stub.Predict(good, timeout=TIMEOUT).outputs["probability"].float_val  # still serving
    assert "Traceback" not in served.stderr()


def test_a_busy_grpc_port_is_one_line_of_error(small_run, tmp_path):
    import socket
    import subprocess

    from tests.serving_helpers import CONVEYOR

    config = copy_home(small_run, tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([str(CONVEYOR), "serve", "--home", str(config.home), "--port", "0", "--grpc-port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"conveyor serve: cannot serve gRPC on 127.0.0.1:{port}: Address already in use"]
