"""Predictions for both APIs (serving/rest_api.py, serving/grpc_api.py): which model a request
names, its signature and request id, and the batch it joins.

A request names the version serving now, a version (`/versions/N`) or a label (`/labels/L`):
`stable` is the version serving now (`pipeline/versions.py` decides which; rollback included),
`canary` or `shadow` the candidate of a running rollout (pipeline/rollouts.py). During a canary
rollout a request that names no version goes to the candidate when its request id hashes into the
canary's share; during a shadow rollout it is answered by stable and copied to the candidate
(serving/batching.py). Each Job carries its route's label for the request log and /metrics.
A version not loaded is loaded by the host's single loader (serving/host.py), and the request
waits for it up to VERSION_LOAD_WAIT_SECONDS.

Small requests parsed on the event loop are answered in the loop's turn, all together; while
keep-alive clients answered moments ago are about to send again they are waited for, at most
batch_gather_seconds (docs/serving.md). Larger ones go to the predict thread (serving/batching.py).
A request's answer is its Job (outputs or error), resolved through a Reply (answered later in the
same loop turn, sent at once) or an asyncio.Future; each API writes it in its own shape.
"""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from models import signatures
from models.instances import Instance
from models.saved_model import LoadedModel
from pipeline import rollouts
from pipeline.configs import PipelineConfig
from serving import metrics, request_log
from serving.batching import Batcher, Job
from serving.host import START, ModelHost, NoModelError, VersionStatus, VersionUnavailable
from serving.http_messages import Reply
from serving.request_ids import RequestIds

# A client counts as about to send again for this many gather windows after its answer (a
# closed-loop client's next request takes well under a millisecond here, more under load).
RETURNING_WITHIN = 5
AT_ONCE, ALL_ARRIVED, FULL, WINDOW_EXPIRED = "at_once", "all_arrived", "full", "window_expired"  # how a batch started
VERSION_LOAD_WAIT_SECONDS = 10.0
STABLE = rollouts.STABLE
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


class ApiError(Exception):
    """A request that cannot be answered: its HTTP status (serving/grpc_api.py maps it to a gRPC code)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None, allow: str | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.allow = status, message, retry_after, allow


@dataclass(frozen=True)
class Loading:
    """A version being loaded for a request."""

    version: str
    load: Future


Target = LoadedModel | Loading | None  # a loaded version, its load, or None: the version serving when the batch runs


class Predictions:
    def __init__(self, config: PipelineConfig, host: ModelHost, requests: request_log.RequestLog | None,
                 loop: asyncio.AbstractEventLoop, ids: RequestIds):
        self.config, self.host, self.loop, self.ids = config, host, loop, ids
        self.batcher = Batcher(host, requests, config.model_name, config.max_batch_instances, self._deliver)
        self._pending: list[Job] = []  # small requests parsed in this turn of the loop
        self._pending_instances = 0
        self._gathering: asyncio.TimerHandle | None = None  # the pending batch waits for returning clients
        self._gather_target = 0  # ... until it holds this many requests
        self.returning: Callable[[float], int] = lambda within: 0  # serving.http.HttpServer.returning

    # which model
    def target(self, version: str | None, label: str | None, request_id: str | None = None) -> Target:
        """The model a request names (ApiError 404/503 if none can answer); with `request_id`, a
        request naming none goes to a canary's candidate if its id falls in the canary's share."""
        if label is not None:
            version = self.labelled(label)
        if version is None:
            if self.host.serving is None:
                raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
            held = self.host.rollout()
            if request_id is not None and held is not None and held[1] is not None and held[0].to_candidate(request_id):
                return held[1]
            return None
        try:
            found = self.host.version(version)
        except NoModelError as exc:
            raise ApiError(404, str(exc)) from None
        except VersionUnavailable as exc:
            raise ApiError(503, str(exc), retry_after=exc.retry_after) from None
        return Loading(version, found) if isinstance(found, Future) else found

    def labels(self) -> dict[str, str]:
        """The labels this worker answers now: stable, and the running rollout's canary or shadow."""
        found = {STABLE: self.host.serving.version} if self.host.serving is not None else {}
        held = self.host.rollout()
        if held is not None and held[1] is not None:
            found[held[0].label] = held[0].candidate
        return found

    def labelled(self, label: str) -> str:
        """The version a label names now."""
        held = self.host.rollout()
        if held is not None and label == held[0].label:
            if held[1] is None:
                raise ApiError(503, f"the {label} version {held[0].candidate} is loading", retry_after=self.config.poll_seconds)
            return held[0].candidate
        if label != STABLE:
            named = ", ".join(repr(name) for name in self.labels()) or repr(STABLE)
            raise ApiError(404, f"unknown version label {label[:60]!r} (labels now: {named})")
        serving = self.host.serving
        if serving is None:
            raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
        return serving.version

    async def loaded(self, loading: Loading) -> LoadedModel:
        """The model of a load in flight, waited for at most VERSION_LOAD_WAIT_SECONDS."""
        version = loading.version
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(loading.load)), VERSION_LOAD_WAIT_SECONDS)
        except asyncio.TimeoutError:
            raise ApiError(503, f"version {version} is still loading; retry in a few seconds", retry_after=2.0) from None
        except Exception as exc:
            raise ApiError(503, f"version {version} failed to load: {type(exc).__name__}: {exc}"[:500],
                           retry_after=self.config.poll_seconds) from None

    def statuses(self, version: str | None) -> list[VersionStatus]:
        """The states of the versions this worker manages (loaded, loading or failed; as TF Serving
        lists the versions its policy aspires to, so that "all AVAILABLE" means ready), or of
        `version` (START if it is pushed and not loaded; ApiError 404 if it is not pushed)."""
        found = self.host.statuses()
        if version is not None:
            found = [s for s in found if s.version == version]
            if not found:
                raise ApiError(404, f"version {version} is not a pushed version of {self.config.model_name!r}")
        else:
            found = [s for s in found if s.state != START]
        if not found:
            raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
        return found

    # asking
    def ask(self, method: str, signature: str | None, instances: list[Instance], request_id: str, client_id: bool,
            target: Target, inline: bool = False) -> Reply | asyncio.Future:
        """Queue a request; its Job comes through the result: answered at the end of this loop turn
        (`inline`, a Reply) or by the predict thread (a Future). ApiError if it cannot be queued."""
        if isinstance(target, Loading):
            return self.loop.create_task(self._after_load(method, signature, instances, request_id, client_id, target))
        chosen = self.signature(method, signature, target)
        if client_id and not self.ids.reserve(request_id):
            raise ApiError(409, f"{REQUEST_ID_HEADER} {request_id!r} was already answered: labels are joined on it, use a new one")
        future = Reply() if inline else self.loop.create_future()
        label, shadow = self._route(target)
        job = Job(instances, target, request_id, future, client_id, signature=chosen, label=label, shadow=shadow)
        if inline:
            self._pending.append(job)
            self._pending_instances += len(instances)
            self._schedule_pending()
        else:
            self.batcher.submit(job)
        return future

    def _route(self, target: LoadedModel | None) -> tuple[str, LoadedModel | None]:
        """During a rollout: the label of the route a request took, and the candidate it is copied to (shadow)."""
        held = self.host.rollout()
        if held is None:
            return "", None
        rollout, candidate = held
        if target is None or target is self.host.serving:
            return STABLE, candidate if rollout.mode == rollouts.SHADOW else None
        if candidate is not None and target is candidate:
            return rollout.label, None
        return "", None

    def signature(self, method: str, name: str | None, target: LoadedModel | None = None) -> str:
        """The signature `name` names for `method` on `target` (None: the serving version); ApiError 400 if none."""
        model = target or self.host.serving
        if model is None:
            raise ApiError(503, self.host.no_model_reason(), retry_after=self.config.poll_seconds)
        try:
            return signatures.resolve(method, name, model.served)
        except signatures.SignatureError as exc:
            raise ApiError(400, str(exc)) from None

    async def _after_load(self, method: str, signature: str | None, instances: list[Instance], request_id: str,
                          client_id: bool, loading: Loading) -> Job:
        try:
            model = await self.loaded(loading)
            answer = self.ask(method, signature, instances, request_id, client_id, model)
            return await answer
        except ApiError as exc:
            job = Job(instances, None, request_id, None)
            job.fail(exc.status, exc.message, exc.retry_after)
            return job

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

    def _deliver(self, jobs: list[Job], inline: bool) -> None:
        """A batch's jobs to their waiters: now (loop thread) or handed to the loop in one wake-up."""
        for job in jobs:
            if job.error is not None and job.client_id:
                self.ids.release(job.request_id)
        if inline:
            _resolve(jobs)
        else:
            self.loop.call_soon_threadsafe(_resolve, jobs)


class Returning:
    """Callers about to call again, where calls cannot be told apart by connection (gRPC multiplexes
    a client's calls on one; serving.http.HttpServer.returning counts keep-alive connections): the
    answers of the last `within` seconds not yet followed by a new call. A caller at its own pace
    comes back after the window, and a lone caller's next call takes its own answer off the count
    before it is batched, so neither waits."""

    def __init__(self, size: int = 1024):
        self._answered: deque[float] = deque(maxlen=size)

    def arrived(self) -> None:
        if self._answered:
            self._answered.popleft()

    def answered(self) -> None:
        self._answered.append(time.monotonic())

    def __call__(self, within: float) -> int:
        cutoff = time.monotonic() - within
        while self._answered and self._answered[0] < cutoff:
            self._answered.popleft()
        return len(self._answered)


def request_id_of(headers: dict[str, str]) -> tuple[str, str | None]:
    """The client's X-Request-Id (lower-case key) if it is a valid one, else a new id and what was wrong."""
    given = headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex, None
    if REQUEST_ID.fullmatch(given):
        return given, None
    return uuid.uuid4().hex, (
        f"{REQUEST_ID_HEADER} must be 1-128 characters of A-Z a-z 0-9 . _ : / + = - (got {len(given)} characters)"
    )


_signature_maps: dict[tuple[str, str], object] = {}  # (path, version) -> SignatureDefMap


def signature_map(model: LoadedModel) -> object:
    """TF Serving's SignatureDefMap of the signatures `model` serves (GetModelMetadata's answer)."""
    key = (str(model.path), model.version)
    if key not in _signature_maps:
        from tensorflow_serving.apis import get_model_metadata_pb2

        found = get_model_metadata_pb2.SignatureDefMap()
        for name, definition in model.signature_defs().items():
            found.signature_def[name].CopyFrom(definition)
        _signature_maps[key] = found
    return _signature_maps[key]


def _resolve(jobs: list[Job]) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_result(job)
