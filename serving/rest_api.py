"""TF Serving's REST API: the routes, the error shape and the metrics of one worker's server (serving/server.py).

    GET  /v1/models/{name}                            every version and its state (TF Serving's shape)
    GET  /v1/models/{name}/versions/{v}               one version's state
    GET  /v1/models/{name}[/versions/{v}]/metadata    signature of serving_default
    POST /v1/models/{name}[/versions/{v}]:predict     {"instances": [...]} -> {"predictions": [...]}
    POST /v1/models/{name}[/versions/{v}]:explain     {"instances": [...]} -> {"predictions": [...], "explanations": [...]}
    GET  /v1/models/{name}/versions/{v}/card          the version's model card (HTML; JSON for Accept: application/json)
    GET  /livez    200 while the process answers HTTP and its model watcher runs
    GET  /readyz   200 while a model is loaded and the request log is writable, else 503
    GET  /metrics  Prometheus text format (serving/metrics.py)

Instances are raw JSON features or {"b64": serialized tf.Example} (models/instances.py). Every
answer carries `X-Request-Id` (the client's if it sent a valid one, else a new one); predictions
also `X-Model-Version`. Every prediction is in the request log before its response is sent.
Errors are `{"error": "<reason>", "request_id": "<id>"}`: 400 malformed JSON, instances or
X-Request-Id; 404 unknown route, model or version; 405 wrong method; 408 request too slow; 409 an
X-Request-Id already answered; 413 body or batch over the limits; 414/431 request line or headers
too long; 503 (with Retry-After) while nothing is loaded, a version is loading or the request log
cannot be written. A 500 says only "internal error" and its request id; the traceback is logged.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import orjson

from models.instances import FeatureRules, Instance, InstanceError, parse_instances
from models.saved_model import SIGNATURE, LoadedModel
from pipeline.configs import PipelineConfig
from serving import explain, metrics, request_log
from serving.batching import Batcher, Job
from serving.host import END, ModelHost, NoModelError, VersionUnavailable
from serving.http_messages import Reply, Request, Response

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "X-Request-Id"
VERSION_HEADER = "X-Model-Version"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
REMEMBERED_REQUEST_IDS = 100_000  # per worker: a client id answered again within these gets 409
INLINE_PARSE_BYTES = 16_384  # larger bodies are parsed off the event loop
# A client counts as about to send again for this many gather windows after its answer (a
# closed-loop client's next request takes well under a millisecond here, more under load).
RETURNING_WITHIN = 5
AT_ONCE, ALL_ARRIVED, FULL, WINDOW_EXPIRED = "at_once", "all_arrived", "full", "window_expired"  # how a batch started
VERSION_LOAD_WAIT_SECONDS = 10.0
PREDICT, STATUS, METADATA, HEALTH, METRICS, OTHER = "predict", "status", "metadata", "health", "metrics", "other"
EXPLAIN, CARD = "explain", "card"


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None, allow: str | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.allow = status, message, retry_after, allow


class RecentIds:
    """The last REMEMBERED_REQUEST_IDS client request ids: labels are joined on them, so one must
    not name two requests. Reserved when a request is accepted, released if it fails."""

    def __init__(self, size: int = REMEMBERED_REQUEST_IDS):
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, request_id: str) -> bool:
        with self._lock:
            if request_id in self._ids:
                return False
            self._ids[request_id] = None
            if len(self._ids) > self.size:
                self._ids.popitem(last=False)
            return True

    def release(self, request_id: str) -> None:
        with self._lock:
            self._ids.pop(request_id, None)


class App:
    """Routes, error shape and metrics; implements serving.http.Application."""

    def __init__(self, config: PipelineConfig, host: ModelHost, requests: request_log.RequestLog | None, loop):
        self.config, self.host, self.loop = config, host, loop
        self.model_name = config.model_name
        self.rules = FeatureRules.from_schema(config.schema_path, config.max_string_bytes)
        self.batcher = Batcher(host, requests, config.model_name, config.max_batch_instances, self._deliver)
        self.ids = RecentIds()
        self.parse_pool = ThreadPoolExecutor(1, thread_name_prefix="parse")
        self.draining = False
        self._signatures: dict[str, dict] = {}
        self._pending: list[Job] = []  # small requests parsed in this turn of the loop
        self._pending_instances = 0
        self._gathering: asyncio.TimerHandle | None = None  # the pending batch waits for returning clients
        self._gather_target = 0  # ... until it holds this many requests
        self.returning: Callable[[float], int] = lambda within: 0  # serving.http.HttpServer.returning

    # serving.http.Application
    def handle(self, request: Request) -> Response | Reply | asyncio.Future:
        request_id, problem = _request_id(request.headers)
        try:
            if problem:
                raise ApiError(400, problem)
            return self._route(request, request_id)
        except ApiError as exc:
            return self._error(exc.status, exc.message, request_id, exc.retry_after, exc.allow)

    def error(self, status: int, message: str, headers: dict[str, str] | None) -> Response:
        request_id, _ = _request_id(headers or {})
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
        if not path.startswith("/v1/models/"):
            raise ApiError(404, f"no route {path!r} (this server answers /v1/models/{self.model_name}..., /livez, /readyz, /metrics)")
        rest = path[len("/v1/models/"):]
        rest, _, verb = rest.partition(":")
        parts = rest.split("/")
        name, parts = parts[0], parts[1:]
        version = None
        if len(parts) >= 2 and parts[0] == "versions":
            version, parts = parts[1], parts[2:]
            if not version.isdigit():
                raise ApiError(404, f"version {version!r} not found (versions are integers)")
        elif parts and parts[0] == "labels":
            raise ApiError(404, "version labels are not supported: use /versions/{version}")
        if name != self.model_name:
            raise ApiError(404, f"model {name!r} not found (this server serves {self.model_name!r})")
        if verb == "explain" and not parts:
            request.route = EXPLAIN
            _allow(request, "POST")
            return self.loop.create_task(self._explain(request, request_id, version))
        if verb:
            if verb != "predict" or parts:
                raise ApiError(404, f"no method {':' + verb!r} on {path!r} (only :predict and :explain are supported)")
            request.route = PREDICT
            _allow(request, "POST")
            return self._predict(request, request_id, version)
        if parts == ["card"] and version is not None:
            request.route = CARD
            _allow(request, "GET")
            return self.loop.run_in_executor(None, self._card, request, request_id, version)
        if parts == ["metadata"]:
            request.route = METADATA
            _allow(request, "GET")
            return self._metadata(request_id, version)
        if parts:
            raise ApiError(404, f"no route {path!r}")
        request.route = STATUS
        _allow(request, "GET")
        return self._status(request_id, version)

    # predict
    def _predict(self, request: Request, request_id: str, version: str | None) -> Response | Reply | asyncio.Future:
        if len(request.body) > INLINE_PARSE_BYTES:
            return self.loop.create_task(self._predict_parsed_off_loop(request, request_id, version))
        return self._submit(self._parse(request.body), request_id, version, "x-request-id" in request.headers, inline=True)

    async def _predict_parsed_off_loop(self, request: Request, request_id: str, version: str | None) -> Response:
        try:
            instances = await self.loop.run_in_executor(self.parse_pool, self._parse, request.body)
            answer = self._submit(instances, request_id, version, "x-request-id" in request.headers)
            return await answer if isinstance(answer, asyncio.Future) else answer
        except ApiError as exc:
            return self._error(exc.status, exc.message, request_id, exc.retry_after)

    def _parse(self, body: bytes) -> list[Instance]:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"malformed JSON body: {exc}") from None
        if isinstance(payload, dict) and payload.get("signature_name", SIGNATURE) != SIGNATURE:
            raise ApiError(400, f"unknown signature_name {str(payload['signature_name'])[:60]!r} (only {SIGNATURE!r})")
        try:
            return parse_instances(payload, self.rules, self.config.max_batch_instances)
        except InstanceError as exc:
            raise ApiError(413 if exc.too_large else 400, str(exc)) from None

    def _submit(self, instances: list[Instance], request_id: str, version: str | None, client_id: bool,
                inline: bool = False):
        """Queue a parsed request: answered at the end of this loop turn (`inline`) or by the predict thread."""
        model = None
        if version is not None:
            found = self._version(version)
            if isinstance(found, Future):
                return self.loop.create_task(self._after_load(found, instances, request_id, version, client_id))
            model = found
        elif self.host.serving is None:
            raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
        if client_id and not self.ids.reserve(request_id):
            raise ApiError(409, f"{REQUEST_ID_HEADER} {request_id!r} was already answered: labels are joined on it, use a new one")
        future = Reply() if inline else self.loop.create_future()
        job = Job(instances, model, request_id, future, client_id)
        if inline:
            self._pending.append(job)
            self._pending_instances += len(instances)
            self._schedule_pending()
        else:
            self.batcher.submit(job)
        return future

    def _schedule_pending(self) -> None:
        """Answer the pending batch after this loop turn; or, while clients answered moments ago
        are about to send again (serving.http.HttpServer.returning), once they have, or at most
        batch_gather_seconds later: one model call and one fsync for all of them instead of one
        each. A lone client, or clients sending at their own pace, never wait."""
        gather = self.config.batch_gather_seconds
        full = self._pending_instances >= self.config.max_batch_instances
        if len(self._pending) == 1:
            returning = self.returning(RETURNING_WITHIN * gather) if gather > 0 and not full else 0
            if returning:
                self._gather_target = 1 + returning
                self._gathering = self.loop.call_later(gather, self._answer_pending, WINDOW_EXPIRED)
            else:
                self.loop.call_soon(self._answer_pending, AT_ONCE)
        elif self._gathering is not None:
            if len(self._pending) >= self._gather_target:
                outcome = ALL_ARRIVED
            elif full:
                outcome = FULL
            else:
                return
            self._gathering.cancel()
            self._gathering = None
            self.loop.call_soon(self._answer_pending, outcome)

    def _answer_pending(self, outcome: str) -> None:
        self._gathering = None
        jobs, self._pending, self._pending_instances = self._pending, [], 0
        metrics.gathers(outcome).inc()
        self.batcher.answer_now(jobs)

    async def _after_load(self, load: Future, instances, request_id: str, version: str, client_id: bool) -> Response:
        try:
            await self._wait_load(load, version)
            answer = self._submit(instances, request_id, version, client_id)
            return await answer if isinstance(answer, asyncio.Future) else answer
        except ApiError as exc:
            return self._error(exc.status, exc.message, request_id, exc.retry_after)

    async def _wait_load(self, load: Future, version: str) -> LoadedModel:
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(load)), VERSION_LOAD_WAIT_SECONDS)
        except asyncio.TimeoutError:
            raise ApiError(503, f"version {version} is still loading; retry in a few seconds", retry_after=2.0) from None
        except Exception as exc:
            raise ApiError(503, f"version {version} failed to load: {type(exc).__name__}: {exc}"[:500], retry_after=self.config.poll_seconds) from None

    def _version(self, version: str) -> LoadedModel | Future:
        try:
            return self.host.version(version)
        except NoModelError as exc:
            raise ApiError(404, str(exc)) from None
        except VersionUnavailable as exc:
            raise ApiError(503, str(exc), retry_after=exc.retry_after) from None

    def _deliver(self, jobs: list[Job], inline: bool) -> None:
        """The responses of a batch: resolved now (loop thread) or handed to the loop in one wake-up."""
        answers = []
        for job in jobs:
            if job.error is not None:
                if job.client_id:
                    self.ids.release(job.request_id)
                response = self._error(*job.error, job.request_id)
            else:
                response = Response(
                    200, orjson.dumps({"predictions": job.outputs}),
                    headers=((VERSION_HEADER, job.version), (REQUEST_ID_HEADER, job.request_id)), version=job.version,
                )
            answers.append((job.future, response))
        if inline:
            _resolve(answers)
        else:
            self.loop.call_soon_threadsafe(_resolve, answers)

    # explain, card (serving/explain.py)
    async def _explain(self, request: Request, request_id: str, version: str | None) -> Response:
        try:
            instances = await self.loop.run_in_executor(self.parse_pool, self._parse, request.body)
            if version is None:
                try:
                    model = self.host.current()
                except NoModelError as exc:
                    raise ApiError(503, str(exc), retry_after=self.config.poll_seconds) from None
            else:
                found = self._version(version)
                model = await self._wait_load(found, version) if isinstance(found, Future) else found
            try:
                body = await self.loop.run_in_executor(None, explain.explain, model, instances)
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
    def _status(self, request_id: str, version: str | None) -> Response:
        found = self.host.statuses()
        if version is not None:
            found = [s for s in found if s.version == version]
            if not found:
                raise ApiError(404, f"version {version} is not a pushed version of {self.model_name!r}")
        if not found:
            raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
        body = {"model_version_status": [
            {"version": s.version, "state": s.state,
             "status": {"error_code": "UNKNOWN" if s.state == END else "OK", "error_message": s.error}}
            for s in found
        ]}
        return self._json(200, body, request_id)

    def _metadata(self, request_id: str, version: str | None):
        if version is None:
            try:
                model = self.host.current()
            except NoModelError as exc:
                raise ApiError(503, str(exc), retry_after=self.config.poll_seconds) from None
            return self._metadata_of(model, request_id)
        found = self._version(version)
        if isinstance(found, Future):
            async def after_load() -> Response:
                try:
                    return self._metadata_of(await self._wait_load(found, version), request_id)
                except ApiError as exc:
                    return self._error(exc.status, exc.message, request_id, exc.retry_after)

            return self.loop.create_task(after_load())
        return self._metadata_of(found, request_id)

    def _metadata_of(self, model: LoadedModel, request_id: str) -> Response:
        if model.version not in self._signatures:
            self._signatures[model.version] = model.signature_metadata()
        body = {"model_spec": {"name": self.model_name, "signature_name": "", "version": model.version},
                "metadata": {"signature_def": self._signatures[model.version]}}
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
    if request.method != method:
        raise ApiError(405, f"{request.method[:20]} is not allowed on {request.path[:200]}: use {method}", allow=method)


def _request_id(headers: dict[str, str]) -> tuple[str, str | None]:
    """The client's X-Request-Id if it is a valid one, else a new id and what was wrong."""
    given = headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex, None
    if REQUEST_ID.fullmatch(given):
        return given, None
    return uuid.uuid4().hex, (
        f"{REQUEST_ID_HEADER} must be 1-128 characters of A-Z a-z 0-9 . _ : / + = - (got {len(given)} characters)"
    )


def _resolve(answers: list[tuple[Reply | asyncio.Future, Response]]) -> None:
    for future, response in answers:
        if not future.done():
            future.set_result(response)
