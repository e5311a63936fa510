"""TF Serving's gRPC API beside the REST one (`conveyor serve --grpc-port N`), on grpc.aio in each
worker's event loop: the same predictions (serving/predictions.py: versions, labels, request ids,
batches, the request log) and metrics as REST.

    tensorflow.serving.PredictionService  Predict, Classify, Regress, GetModelMetadata (MultiInference: UNIMPLEMENTED)
    tensorflow.serving.ModelService       GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)

A ModelSpec names the model (`model_name`), a version or a label (`stable`; during a rollout
`canary` or `shadow`: serving/predictions.py) and a signature
(models/signatures.py: as in REST, Classify and Regress without one use the classification and
regression signatures). Predict takes the signature's one input, a DT_STRING tensor of serialized
tf.Examples of shape [N]; Classify and Regress an example list, with or without context. The
client's `x-request-id` metadata works as REST's X-Request-Id; `x-request-id` and
`x-model-version` come back as trailing metadata. Errors are gRPC statuses with REST's messages:
400 INVALID_ARGUMENT, 404 NOT_FOUND, 409 ALREADY_EXISTS, 413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE,
500 INTERNAL. Limits: messages up to max_request_bytes, metadata up to the header limit, at most
max_connections connections, idle connections closed after idle_timeout_seconds (clients reconnect
on their own).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from models import signatures
from models.instances import FeatureRules, Instance, InstanceError, checked_batch, parse_serialized
from serving import metrics
from serving.batching import Job
from serving.host import END
from serving.http_messages import Limits, Reply
from serving.log_throttle import Throttled
from serving.predictions import ApiError, Loading, Predictions, Returning, request_id_of, signature_map

log = logging.getLogger(__name__)
throttled = Throttled(log)
INLINE_PARSE_BYTES = 16_384  # larger requests are read off the event loop, as REST bodies are
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
         409: grpc.StatusCode.ALREADY_EXISTS, 413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}
STATES = {name: get_model_status_pb2.ModelVersionStatus.State.Value(name) for name in ("START", "LOADING", "AVAILABLE", "END")}
_OK, _UNKNOWN = 0, 2  # tensorflow.error.Code
PREDICT, CLASSIFY, REGRESS = "predict", "classify", "regress"


class Api:
    """What both services share: the model spec read, errors, the request id, metrics."""

    def __init__(self, predictions: Predictions, rules: FeatureRules):
        self.predictions, self.rules = predictions, rules
        self.model_name = predictions.config.model_name
        self.max_instances = predictions.config.max_batch_instances
        self.parse_pool = ThreadPoolExecutor(1, thread_name_prefix="grpc-parse")
        self.returning = Returning()

    async def call(self, method: str, context: grpc.aio.ServicerContext, answer) -> Any:
        """Run `answer(request_id, client_id)`; an ApiError becomes the gRPC status, and every call is counted."""
        started = time.perf_counter()
        given = {key: value for key, value in context.invocation_metadata() or () if key == "x-request-id"}
        request_id, problem = request_id_of(given)
        code, version = "OK", ""
        try:
            if problem:
                raise ApiError(400, problem)
            response, version = await answer(request_id, "x-request-id" in given)
        except ApiError as exc:
            status = CODES.get(exc.status, grpc.StatusCode.INTERNAL)
            code, message = status.name, exc.message
        except Exception:
            throttled("grpc", logging.ERROR, f"unexpected error answering gRPC {method}", exc_info=True)
            status, code, message = grpc.StatusCode.INTERNAL, "INTERNAL", "internal error"
        else:
            context.set_trailing_metadata((("x-request-id", request_id), ("x-model-version", version)))
            return response
        finally:
            metrics.grpc_requests(method, code, version).inc()
            metrics.grpc_latency(method).observe(time.perf_counter() - started)
        await context.abort(status, message, trailing_metadata=(("x-request-id", request_id),))

    def target(self, spec: model_pb2.ModelSpec, request_id: str | None = None):
        if spec.name != self.model_name:
            raise ApiError(404, f"model {spec.name[:100]!r} not found (this server serves {self.model_name!r})")
        choice = spec.WhichOneof("version_choice")
        version = str(spec.version.value) if choice == "version" else None
        label = spec.version_label if choice == "version_label" else None
        return self.predictions.target(version, label, request_id)

    async def model(self, spec: model_pb2.ModelSpec):
        """The loaded model `spec` names (waiting for its load), for metadata."""
        target = self.target(spec)
        if isinstance(target, Loading):
            return await self.predictions.loaded(target)
        return target or self.predictions.host.current()

    async def infer(self, method: str, spec: model_pb2.ModelSpec, size: int, read: Callable[[], list[Instance]],
                    request_id: str, client_id: bool) -> Job:
        """The answered Job of a predict, classify or regress request whose instances `read` returns."""
        target = self.target(spec, request_id)
        name = spec.signature_name or None
        if not isinstance(target, Loading):
            self.predictions.signature(method, name, target)
        inline = size <= INLINE_PARSE_BYTES
        instances = self._read(read) if inline else await asyncio.get_running_loop().run_in_executor(self.parse_pool, self._read, read)
        self.returning.arrived()
        answer = self.predictions.ask(method, name, instances, request_id, client_id, target, inline=inline)
        if isinstance(answer, Reply):
            waiter = asyncio.get_running_loop().create_future()
            answer.then(waiter.set_result)
            answer = waiter
        job = await answer
        self.returning.answered()
        if job.error is not None:
            raise ApiError(*job.error, job.retry_after)
        return job

    @staticmethod
    def _read(read: Callable[[], list[Instance]]) -> list[Instance]:
        try:
            return read()
        except InstanceError as exc:
            raise ApiError(413 if exc.too_large else 400, str(exc)) from None

    def examples(self, request: Any) -> Callable[[], list[Instance]]:
        """A reader of a Classify/Regress request's examples, context merged in (an example's own features win)."""

        def read() -> list[Instance]:
            kind = request.input.WhichOneof("kind")
            if kind is None:
                raise InstanceError("the request's input holds no example_list or example_list_with_context")
            listed = getattr(request.input, kind)
            examples = checked_batch(list(listed.examples), "examples", self.max_instances)
            serialized = []
            for example in examples:
                if kind == "example_list_with_context":
                    merged = example_pb2.Example()
                    merged.CopyFrom(listed.context)
                    for name, feature in example.features.feature.items():
                        merged.features.feature[name].CopyFrom(feature)
                    example = merged
                serialized.append(example.SerializeToString())
            return [parse_serialized(s, self.rules, i) for i, s in enumerate(serialized)]

        return read

    def spec(self, job: Job) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=job.signature)
        spec.version.value = int(job.version)
        return spec


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, api: Api):
        self.api = api

    async def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        async def answer(request_id: str, client_id: bool):
            read = lambda: _tensor_examples(request, self.api)  # noqa: E731
            job = await self.api.infer(PREDICT, request.model_spec, request.ByteSize(), read, request_id, client_id)
            outputs = [signatures.answer(job.signature, o) for o in job.outputs]
            wanted = list(request.output_filter) or list(outputs[0])
            unknown = [name for name in wanted if name not in outputs[0]]
            if unknown:
                raise ApiError(400, f"output_filter names {unknown[0]!r}, not an output of {job.signature!r} ({', '.join(outputs[0])})")
            response = predict_pb2.PredictResponse(model_spec=self.api.spec(job))
            for name in wanted:
                response.outputs[name].CopyFrom(_tensor([o[name] for o in outputs]))
            return response, job.version

        return await self.api.call("Predict", context, answer)

    async def Classify(self, request: classification_pb2.ClassificationRequest, context):
        async def answer(request_id: str, client_id: bool):
            job = await self.api.infer(CLASSIFY, request.model_spec, request.ByteSize(), self.api.examples(request), request_id, client_id)
            response = classification_pb2.ClassificationResponse(model_spec=self.api.spec(job))
            for output in job.outputs:
                scored = signatures.answer(signatures.CLASSIFICATION, output)
                response.result.classifications.add().classes.extend(
                    classification_pb2.Class(label=label, score=score)
                    for label, score in zip(scored[signatures.CLASSES], scored[signatures.SCORES]))
            return response, job.version

        return await self.api.call("Classify", context, answer)

    async def Regress(self, request: regression_pb2.RegressionRequest, context):
        async def answer(request_id: str, client_id: bool):
            job = await self.api.infer(REGRESS, request.model_spec, request.ByteSize(), self.api.examples(request), request_id, client_id)
            response = regression_pb2.RegressionResponse(model_spec=self.api.spec(job))
            response.result.regressions.extend(regression_pb2.Regression(value=output["probability"]) for output in job.outputs)
            return response, job.version

        return await self.api.call("Regress", context, answer)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        async def answer(request_id: str, client_id: bool):
            fields = list(request.metadata_field)
            if not fields:
                raise ApiError(400, "GetModelMetadataRequest must name at least one metadata_field ('signature_def')")
            if fields != ["signature_def"]:
                raise ApiError(400, f"metadata_field {next(f for f in fields if f != 'signature_def')[:60]!r} is not supported (only 'signature_def')")
            model = await self.api.model(request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = self.api.model_name
            response.model_spec.version.value = int(model.version)
            response.metadata["signature_def"].Pack(signature_map(model))
            return response, model.version

        return await self.api.call("GetModelMetadata", context, answer)


    async def MultiInference(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served: use Classify or Regress")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, api: Api):
        self.api = api

    async def HandleReloadConfigRequest(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "the served versions follow the serving root (pipeline/versions.py), not a model config")

    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        async def answer(request_id: str, client_id: bool):
            spec = request.model_spec
            if spec.name != self.api.model_name:
                raise ApiError(404, f"model {spec.name[:100]!r} not found (this server serves {self.api.model_name!r})")
            choice = spec.WhichOneof("version_choice")
            version = (str(spec.version.value) if choice == "version"
                       else self.api.predictions.labelled(spec.version_label) if choice == "version_label" else None)
            response = get_model_status_pb2.GetModelStatusResponse()
            for status in self.api.predictions.statuses(version):
                found = response.model_version_status.add(version=int(status.version), state=STATES[status.state])
                found.status.error_code = _UNKNOWN if status.state == END else _OK
                found.status.error_message = status.error
            return response, ""

        return await self.api.call("GetModelStatus", context, answer)


def _tensor_examples(request: predict_pb2.PredictRequest, api: Api) -> list[Instance]:
    """The serialized tf.Examples of a PredictRequest's one input (a DT_STRING tensor of shape [N])."""
    name = signatures.INPUTS.get(request.model_spec.signature_name or signatures.DEFAULT, signatures.INPUTS[signatures.DEFAULT])
    if set(request.inputs) != {name}:
        others = sorted(set(request.inputs) - {name})
        raise InstanceError(f"input {others[0][:60]!r} is not in the signature (its one input is {name!r})" if others
                            else f"missing input {name!r}")
    tensor = request.inputs[name]
    dims = [d.size for d in tensor.tensor_shape.dim]
    if tensor.dtype != types_pb2.DT_STRING:
        raise InstanceError(f"input {name!r} must be a DT_STRING tensor of serialized tf.Examples, got {types_pb2.DataType.Name(tensor.dtype)}")
    if len(dims) != 1 or dims[0] != len(tensor.string_val):
        raise InstanceError(f"input {name!r} must have shape [N] with its N serialized tf.Examples, got shape {dims} "
                            f"and {len(tensor.string_val)} values")
    examples = checked_batch(list(tensor.string_val), "inputs", api.max_instances)
    return [parse_serialized(s, api.rules, i) for i, s in enumerate(examples)]


def _tensor(values: list) -> tensor_pb2.TensorProto:
    """A TensorProto of one output over the batch ([N], or [N, k] for lists)."""
    first = values[0][0] if isinstance(values[0], list) else values[0]
    flat = [v for row in values for v in row] if isinstance(values[0], list) else values
    shape = [len(values)] + ([len(values[0])] if isinstance(values[0], list) else [])
    tensor = tensor_pb2.TensorProto(tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]))
    if isinstance(first, str):
        tensor.dtype = types_pb2.DT_STRING
        tensor.string_val.extend(v.encode() for v in flat)
    elif isinstance(first, int):
        tensor.dtype = types_pb2.DT_INT64
        tensor.int64_val.extend(flat)
    else:
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.float_val.extend(flat)
    return tensor


async def start(predictions: Predictions, rules: FeatureRules, host: str, port: int, limits: Limits) -> grpc.aio.Server:
    """A started grpc.aio server on host:port (shared by the workers: SO_REUSEPORT, grpc's default),
    its callers counted with the HTTP layer's in `predictions.returning`."""
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", limits.max_body_bytes),
        ("grpc.max_metadata_size", limits.max_header_bytes),
        ("grpc.max_connection_idle_ms", int(limits.idle_timeout * 1000)),
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
    ])
    api = Api(predictions, rules)
    http_returning = predictions.returning  # batches wait for returning callers of both APIs
    predictions.returning = lambda within: http_returning(within) + api.returning(within)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(api), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(api), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound or (port and bound != port):
        raise OSError(f"cannot serve gRPC on {address}")
    await server.start()
    return server
