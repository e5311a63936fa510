"""TF Serving's REST API: the routes, the error shape and the metrics of one worker's server (serving/server.py).

    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]              versions and their states (TF Serving's shape)
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata     the signatures served (inputs, outputs, methods)
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict      row or columnar format (serving/rest_formats.py)
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:classify     {"examples": [...]} -> {"result": [[[class, score], ...]]}
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:regress      {"examples": [...]} -> {"result": [...]}
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:explain      {"instances": [...]} -> {"predictions": [...], "explanations": [...]}
    GET  /v1/models/{name}/versions/{v}/card                         the version's model card (HTML; JSON for Accept: application/json)
    GET  /livez    200 while the process answers HTTP and its model watcher runs
    GET  /readyz   200 while a model is loaded and the request log is writable, else 503
    GET  /metrics  Prometheus text format (serving/metrics.py)

As in TF Serving, the fixed parts of a path match in any case and the model name and label are
percent-decoded. Labels: `stable`, the version serving now, and during a rollout `canary` or
`shadow`, its candidate (serving/predictions.py); the model's status lists them (`"labels":
{"stable": "V", "canary": "W"}`). Every answer carries `X-Request-Id` (the client's if it sent a
valid one, else a new one); predictions also `X-Model-Version`, the version that answered. Every prediction is in the request log before its response is sent.
Errors are `{"error": "<reason>", "request_id": "<id>"}`: 400 malformed JSON, body, instances,
signature or X-Request-Id; 404 unknown route, model, version or label; 405 wrong method; 408
request too slow; 409 an X-Request-Id already answered; 413 body or batch over the limits; 414/431
request line or headers too long; 503 (with Retry-After) while nothing is loaded, a version is
loading or the request log cannot be written. A 500 says only "internal error" and its request
id; the traceback is logged.
"""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import unquote

import orjson

from models.instances import FeatureRules, InstanceError
from models.saved_model import LoadedModel
from pipeline.configs import PipelineConfig
from schema import versions as schema_versions
from serving import explain, metrics, request_log, rest_formats
from serving.batching import Job
from serving.host import END, ModelHost, NoModelError
from serving.http_messages import Reply, Request, Response
from serving.log_throttle import Throttled
from serving.predictions import REQUEST_ID_HEADER, ApiError, Loading, Predictions, Target, request_id_of, signature_map
from serving.request_ids import RequestIds

log = logging.getLogger(__name__)
throttled = Throttled(log)
VERSION_HEADER = "X-Model-Version"
INLINE_PARSE_BYTES = 16_384  # larger bodies are parsed off the event loop
METHODS = (rest_formats.PREDICT, rest_formats.CLASSIFY, rest_formats.REGRESS)
STATUS, METADATA, HEALTH, METRICS, OTHER = "status", "metadata", "health", "metrics", "other"
EXPLAIN, CARD = "explain", "card"
PREFIX = "/v1/models/"


class App:
    """Routes, error shape and metrics; implements serving.http.Application."""

    def __init__(self, config: PipelineConfig, host: ModelHost, requests: request_log.RequestLog | None, loop,
                 ids: RequestIds | None = None):
        self.config, self.host, self.loop = config, host, loop
        self.model_name = config.model_name
        self.rules = FeatureRules.from_schema(schema_versions.in_force(config.home, config.schema_path), config.max_string_bytes)
        self.predictions = Predictions(config, host, requests, loop, ids or RequestIds())
        self.batcher = self.predictions.batcher
        self.parse_pool = ThreadPoolExecutor(1, thread_name_prefix="parse")
        self.draining = False

    # serving.http.Application
    def handle(self, request: Request) -> Response | Reply | asyncio.Future:
        request_id, problem = request_id_of(request.headers)
        try:
            if problem:
                raise ApiError(400, problem)
            return self._route(request, request_id)
        except ApiError as exc:
            return self._error(exc.status, exc.message, request_id, exc.retry_after, exc.allow)

    def error(self, status: int, message: str, headers: dict[str, str] | None) -> Response:
        request_id, _ = request_id_of(headers or {})
        return self._error(status, message, request_id)

    def observe(self, request: Request | None, response: Response, seconds: float) -> None:
        route = request.route if request is not None else OTHER
        metrics.requests(route, str(response.status), response.version).inc()
        if request is not None:
            metrics.latency(route).observe(seconds)

    def count(self, event: str) -> None:
        metrics.http_events(event).inc()

    def connections(self, open_now: int) -> None:
        metrics.CONNECTIONS.set(open_now)

    # routing
    def _route(self, request: Request, request_id: str) -> Response | Reply | asyncio.Future:
        path = request.path
        if path in ("/livez", "/readyz", "/metrics"):
            request.route = METRICS if path == "/metrics" else HEALTH
            _allow(request, "GET")
            if path == "/metrics":  # reads every worker's file: off the loop
                return self.loop.run_in_executor(None, self._metrics, request_id)
            return self._live(request_id) if path == "/livez" else self._ready(request_id)
        if path[: len(PREFIX)].lower() != PREFIX:
            raise ApiError(404, f"no route {path[:200]!r} (this server answers /v1/models/{self.model_name}..., /livez, /readyz, /metrics)")
        rest, _, verb = path[len(PREFIX):].partition(":")
        parts = rest.split("/")
        name, parts = _decoded(parts[0]), parts[1:]
        version = label = None
        if len(parts) >= 2 and parts[0].lower() == "versions":
            if not parts[1].isdigit():
                raise ApiError(404, f"version {parts[1][:40]!r} not found (versions are integers)")
            version, parts = str(int(parts[1])), parts[2:]
        elif len(parts) >= 2 and parts[0].lower() == "labels":
            label, parts = _decoded(parts[1]), parts[2:]
        if name != self.model_name:
            raise ApiError(404, f"model {name[:100]!r} not found (this server serves {self.model_name!r})")
        if verb.lower() == EXPLAIN and not parts:
            request.route = EXPLAIN
            _allow(request, "POST")
            return self.loop.create_task(self._explain(request, request_id, version, label))
        if verb:
            method = verb.lower()
            if parts:
                raise ApiError(404, f"no route {path[:200]!r}")
            if method not in METHODS:
                raise ApiError(404, f"no method {':' + verb[:40]!r} on {path[:200]!r} (methods: :predict, :classify, :regress, :explain)")
            request.route = method
            _allow(request, "POST")
            return self._infer(request, request_id, method, version, label)
        if [part.lower() for part in parts] == ["card"] and version is not None:
            request.route = CARD
            _allow(request, "GET")
            return self.loop.run_in_executor(None, self._card, request, request_id, version)
        if [part.lower() for part in parts] == ["metadata"]:
            request.route = METADATA
            _allow(request, "GET")
            return self._metadata(request_id, version, label)
        if parts:
            raise ApiError(404, f"no route {path[:200]!r}")
        request.route = STATUS
        _allow(request, "GET")
        return self._status(request_id, version, label)

    # predict, classify, regress
    def _infer(self, request: Request, request_id: str, method: str, version: str | None,
               label: str | None) -> Response | Reply | asyncio.Future:
        """Answer a predict, classify or regress request. The model it names (a label, a missing
        version) and its signature are checked before its instances are read, as TF Serving does."""
        client_id = "x-request-id" in request.headers
        target = self.predictions.target(version, label, request_id)
        if len(request.body) > INLINE_PARSE_BYTES:
            return self.loop.create_task(self._infer_off_loop(request.body, request_id, method, target, client_id))
        asked = self._read(method, request.body, target)
        answer = self.predictions.ask(method, asked.signature, asked.instances, request_id, client_id, target, inline=True)
        if isinstance(answer, Reply):
            return answer.map(partial(self._answer, asked=asked))
        return self.loop.create_task(self._answer_later(answer, asked))

    async def _infer_off_loop(self, body: bytes, request_id: str, method: str, target: Target, client_id: bool) -> Response:
        try:
            asked = await self.loop.run_in_executor(self.parse_pool, self._read, method, body, target)
            answer = self.predictions.ask(method, asked.signature, asked.instances, request_id, client_id, target)
            return self._answer(await answer, asked)
        except ApiError as exc:
            return self._error(exc.status, exc.message, request_id, exc.retry_after)

    async def _answer_later(self, answer: asyncio.Future, asked: rest_formats.Asked) -> Response:
        return self._answer(await answer, asked)

    def _read(self, method: str, body: bytes, target: Target) -> rest_formats.Asked:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"malformed JSON body: {exc}") from None
        try:
            asked = rest_formats.read(method, payload, self.rules, self.config.max_batch_instances, check=(
                None if isinstance(target, Loading) else partial(self.predictions.signature, method, target=target)))
            return asked
        except InstanceError as exc:
            raise ApiError(413 if exc.too_large else 400, str(exc)) from None

    def _answer(self, job: Job, asked: rest_formats.Asked) -> Response:
        if job.error is not None:
            return self._error(*job.error, job.request_id, job.retry_after)
        try:
            body = orjson.dumps(rest_formats.answer(asked, job.signature, job.outputs))
        except Exception:  # a bug of ours: the client still gets an answer
            throttled("answer", logging.ERROR, "unexpected error writing an answer", exc_info=True)
            return self._error(500, "internal error", job.request_id)
        return Response(200, body, headers=((VERSION_HEADER, job.version), (REQUEST_ID_HEADER, job.request_id)),
                        version=job.version)

    # explain, card (serving/explain.py)
    async def _explain(self, request: Request, request_id: str, version: str | None, label: str | None) -> Response:
        try:
            target = self.predictions.target(version, label)
            asked = await self.loop.run_in_executor(self.parse_pool, self._read, rest_formats.PREDICT, request.body, target)
            if target is None:
                try:
                    model = self.host.current()
                except NoModelError as exc:
                    raise ApiError(503, str(exc), retry_after=self.config.poll_seconds) from None
            else:
                model = await self.predictions.loaded(target) if isinstance(target, Loading) else target
            try:
                body = await self.loop.run_in_executor(None, explain.explain, model, asked.instances)
            except explain.NoCard as exc:
                raise ApiError(409, str(exc)) from None
            return self._json(200, body, request_id, model.version)
        except ApiError as exc:
            return self._error(exc.status, exc.message, request_id, exc.retry_after)

    def _card(self, request: Request, request_id: str, version: str) -> Response:
        as_json = "application/json" in request.headers.get("accept", "")
        try:
            body, content_type = explain.card(self.config.serving_root_uri, version, as_json)
        except explain.NoCard as exc:
            return self._error(404, str(exc), request_id)
        return Response(200, body, content_type=content_type, headers=((REQUEST_ID_HEADER, request_id), (VERSION_HEADER, version)))

    # status, metadata, health
    def _status(self, request_id: str, version: str | None, label: str | None) -> Response:
        if label is not None:
            version = self.predictions.labelled(label)
        body = {"model_version_status": [
            {"version": s.version, "state": s.state,
             "status": {"error_code": "UNKNOWN" if s.state == END else "OK", "error_message": s.error}}
            for s in self.predictions.statuses(version)
        ]}
        if version is None:
            body["labels"] = self.predictions.labels()
        return self._json(200, body, request_id)

    def _metadata(self, request_id: str, version: str | None, label: str | None) -> Response | asyncio.Future:
        if version is None and label is None:
            try:
                return self._metadata_of(self.host.current(), request_id)
            except NoModelError as exc:
                raise ApiError(503, str(exc), retry_after=self.config.poll_seconds) from None
        target = self.predictions.target(version, label)
        if isinstance(target, Loading):
            async def after_load(loading: Loading) -> Response:
                try:
                    return self._metadata_of(await self.predictions.loaded(loading), request_id)
                except ApiError as exc:
                    return self._error(exc.status, exc.message, request_id, exc.retry_after)

            return self.loop.create_task(after_load(target))
        return self._metadata_of(target or self.host.current(), request_id)

    def _metadata_of(self, model: LoadedModel, request_id: str) -> Response:
        from google.protobuf import json_format

        defs = json_format.MessageToDict(signature_map(model), always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True)
        body = {"model_spec": {"name": self.model_name, "signature_name": "", "version": model.version},
                "metadata": {"signature_def": defs}}
        return self._json(200, body, request_id, model.version)

    def _live(self, request_id: str) -> Response:
        if not self.host.alive():
            raise ApiError(503, "the model watcher thread is not running")
        return self._json(200, {"status": "alive", "pid": os.getpid()}, request_id)

    def _ready(self, request_id: str) -> Response:
        if self.draining:
            raise ApiError(503, "shutting down")
        model = self.host.serving
        if model is None:
            raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
        if not self.batcher.log_healthy():
            raise ApiError(503, self.batcher.log_error or "the request log cannot be written", retry_after=5.0)
        return self._json(200, {"status": "ready", "version": model.version}, request_id, model.version)

    def _metrics(self, request_id: str) -> Response:
        body, content_type = metrics.exposition()
        return Response(200, body, content_type=content_type, headers=((REQUEST_ID_HEADER, request_id),))

    # responses
    def _json(self, status: int, body: Any, request_id: str, version: str | None = None) -> Response:
        headers = ((REQUEST_ID_HEADER, request_id),) + (((VERSION_HEADER, version),) if version else ())
        return Response(status, orjson.dumps(body), headers=headers)

    def _error(self, status: int, message: str, request_id: str, retry_after: float | None = None,
               allow: str | None = None) -> Response:
        headers = [(REQUEST_ID_HEADER, request_id)]
        if retry_after is not None:
            headers.append(("Retry-After", str(max(1, round(retry_after)))))
        if allow is not None:
            headers.append(("Allow", allow))
        return Response(status, orjson.dumps({"error": message, "request_id": request_id}), headers=tuple(headers))


def _allow(request: Request, method: str) -> None:
    if request.method != method and not (method == "GET" and request.method == "HEAD"):  # HEAD: GET without the body
        raise ApiError(405, f"{request.method[:20]} is not allowed on {request.path[:200]}: use {method}", allow=method)


def _decoded(text: str) -> str:
    """A percent-encoded path segment (a model name or label) decoded, as TF Serving decodes them."""
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, f"cannot decode {text[:60]!r}: not percent-encoded UTF-8") from None
