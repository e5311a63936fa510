"""The model server: TF Serving's REST API over FastAPI/uvicorn.

    GET  /v1/models/{name}[/versions/{v}]            version status
    GET  /v1/models/{name}[/versions/{v}]/metadata   signature of serving_default
    POST /v1/models/{name}[/versions/{v}]:predict    {"instances": [...]} -> {"predictions": [...]}

Instances are raw JSON features or {"b64": serialized tf.Example} (models/instances.py). Each
answer carries `X-Model-Version` and `X-Request-Id` headers, and every prediction is appended
to the request log before the response is sent. Errors are `{"error": "<reason>"}` with a 4xx
for anything the client can fix: 400 malformed JSON or instances, 404 unknown model/version,
413 body or batch over the limits; 503 while nothing is pushed.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline.configs import PipelineConfig
from serving import request_log
from serving.host import ModelHost, NoModelError
from models.instances import FeatureRules, InstanceError, parse_instances
from models.saved_model import SIGNATURE, LoadedModel, PredictionError, RejectedInput

log = logging.getLogger(__name__)
REQUEST_ID_HEADER = "X-Request-Id"
VERSION_HEADER = "X-Model-Version"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(config: PipelineConfig, host: ModelHost, requests: request_log.RequestLog | None) -> FastAPI:
    """The REST app for the models under `host`; `requests` None disables the request log."""
    rules = FeatureRules.from_schema(config.schema_path)
    app = FastAPI(title="Conveyor model server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    async def model_for(name: str, version: str | None) -> LoadedModel:
        if name != config.model_name:
            raise ApiError(404, f"model {name!r} not found (this server serves {config.model_name!r})")
        try:
            if version is None:
                return host.current()
            if not version.isdigit():
                raise ApiError(404, f"version {version!r} not found (versions are integers)")
            return await run_in_threadpool(host.version, version)
        except NoModelError as exc:
            raise ApiError(503 if version is None else 404, str(exc)) from exc

    def status(model: LoadedModel) -> dict[str, Any]:
        return {"model_version_status": [
            {"version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]}

    def metadata(name: str, model: LoadedModel) -> dict[str, Any]:
        return {"model_spec": {"name": name, "signature_name": "", "version": model.version},
                "metadata": {"signature_def": model.signature_metadata()}}

    async def predict(name: str, version: str | None, request: Request) -> JSONResponse:
        body = await _read_capped(request, config.max_request_bytes)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON body: {exc}") from exc
        if isinstance(payload, dict) and payload.get("signature_name", SIGNATURE) != SIGNATURE:
            raise ApiError(400, f"unknown signature_name {payload['signature_name']!r} (only {SIGNATURE!r})")
        try:
            instances = parse_instances(payload, rules, config.max_batch_instances)
        except InstanceError as exc:
            raise ApiError(413 if exc.too_large else 400, str(exc)) from exc
        model = await model_for(name, version)
        try:
            outputs = await run_in_threadpool(model.predict, instances)
        except RejectedInput as exc:
            raise ApiError(400, str(exc)) from exc
        except PredictionError as exc:
            raise ApiError(500, str(exc)) from exc
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        if requests is not None:
            now = datetime.now(timezone.utc)
            records = [
                request_log.record(request_id, i, now, name, model.version, inst.features, out)
                for i, (inst, out) in enumerate(zip(instances, outputs))
            ]
            await run_in_threadpool(requests.append, records, now)
        return JSONResponse(
            {"predictions": outputs}, headers={VERSION_HEADER: model.version, REQUEST_ID_HEADER: request_id}
        )

    @app.get("/v1/models/{name}")
    async def model_status(name: str) -> dict[str, Any]:
        return status(await model_for(name, None))

    @app.get("/v1/models/{name}/versions/{version}")
    async def version_status(name: str, version: str) -> dict[str, Any]:
        return status(await model_for(name, version))

    @app.get("/v1/models/{name}/metadata")
    async def model_metadata(name: str) -> dict[str, Any]:
        return metadata(name, await model_for(name, None))

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def version_metadata(name: str, version: str) -> dict[str, Any]:
        return metadata(name, await model_for(name, version))

    @app.post("/v1/models/{name}:predict")
    async def predict_served(name: str, request: Request) -> JSONResponse:
        return await predict(name, None, request)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def predict_version(name: str, version: str, request: Request) -> JSONResponse:
        return await predict(name, version, request)

    return app


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Server:
    """A configured server: the model host, its watcher and uvicorn, on a bound loopback socket."""

    config: PipelineConfig
    host: ModelHost
    uvicorn_server: Any
    sock: socket.socket
    stop_watch: threading.Event

    @property
    def url(self) -> str:
        address, port = self.sock.getsockname()[:2]
        return f"http://{address}:{port}"

    def run(self) -> None:
        """Serve until stopped (SIGINT/SIGTERM in the main thread, or stop())."""
        try:
            self.uvicorn_server.run(sockets=[self.sock])
        finally:
            self.stop_watch.set()

    def stop(self) -> None:
        self.uvicorn_server.should_exit = True
        self.stop_watch.set()


def build(
    config: PipelineConfig, host: str | None = None, port: int | None = None, log_root: Path | None = None,
    log_requests: bool = True,
) -> Server:
    """Load the serving version, start watching for new ones, bind the socket (port 0 = any free)."""
    import uvicorn

    model_host = ModelHost(config.serving_root)
    model_host.refresh()
    stop_watch = threading.Event()
    model_host.watch(config.poll_seconds, stop_watch)
    requests = request_log.RequestLog(log_root or config.request_log_root) if log_requests else None
    app = create_app(config, model_host, requests)
    bind_host = host or config.serving_host
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for TCP-typed sockets
    # (without it every keep-alive response waits ~40 ms for the client's delayed ACK).
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind_host, config.serving_port if port is None else port))
    sock.listen(2048)  # connections queue from now on, before uvicorn starts accepting
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    return Server(config, model_host, server, sock, stop_watch)


class BackgroundServer:
    """`with BackgroundServer(server) as url:` runs `server` in a thread (tests, benchmarks)."""

    def __init__(self, server: Server, timeout: float = 30.0):
        self.server, self.timeout = server, timeout
        self._thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.server.uvicorn_server.started:
                return self.server.url
            time.sleep(0.05)
        self.server.stop()
        raise TimeoutError(f"server did not start within {self.timeout} s")

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._thread.join(timeout=self.timeout)
