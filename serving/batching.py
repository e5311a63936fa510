"""Request batching: predict requests answered together, one model call and one log commit each.

Two ways in, the same answering code. Small requests are answered by the event-loop thread itself
(`answer_now`): everything parsed in one turn of the loop is one batch, and while the model and
the fsync run, new requests gather in the socket buffers for the next turn. This costs no thread
hand-off, which on a busy machine means no wake-ups to wait for. Large requests (parsed off the
loop so that they never stall it) go to the predict thread (`submit`): requests that arrive while
the model is busy wait in its queue and the next call takes all of them. Either way a batch holds
at most max_batch_instances instances, under load one call and one fsync serve many requests,
and at low load nothing waits: there is no timer.
The serving version is taken once per batch, so a hot swap never splits a batch. If the model
refuses a merged batch, each request is asked again alone, so only the faulty one gets the 400.
During a shadow rollout the candidate's call for the batch runs on its own thread while the
stable version answers (TensorFlow releases the GIL), so the client waits for the slower of the
two calls, not their sum; its outputs (or its error) go into the same request-log records. A
server without a request log does not ask the shadow: nothing would record what it answered. A
canary's candidate that fails (not the client's input) is replaced by stable for that request.
A request is answered only after its records are on disk; if they cannot be written it gets 503
and nothing is answered for it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from models.features import PROBABILITIES_KEY, PROBABILITY_KEY
from models.instances import Instance
from models.saved_model import LoadedModel, PredictionError, RejectedInput
from pipeline import rollouts
from serving import metrics, request_log
from serving.host import ModelHost, NoModelError
from serving.log_throttle import Throttled

log = logging.getLogger(__name__)
throttled = Throttled(log)
LOG_ERROR_HOLD_SECONDS = 10.0  # readiness stays failed this long after a request-log failure


@dataclass
class Job:
    instances: list[Instance]
    model: LoadedModel | None  # None: whatever version serves when the batch runs
    request_id: str
    future: Any  # a serving.http_messages.Reply (answered inline) or an asyncio.Future of this Job, set by the deliver callback
    client_id: bool = False  # request_id came from the client (reserved, released on failure)
    signature: str = "serving_default"  # whose answer the client gets (models/signatures.py); the model call is the same
    version: str = ""
    outputs: list[dict] = field(default_factory=list)
    error: tuple[int, str] | None = None  # (HTTP status, message)
    retry_after: float | None = None
    logged: bool = False  # its records are durable in the request log (or there is no log)
    label: str = ""  # during a rollout, the route it took: stable, canary (shadow: asked by label)
    shadow: LoadedModel | None = None  # a shadow rollout's candidate, which answers a copy of it
    shadow_outputs: list[dict] = field(default_factory=list)
    shadow_error: str | None = None
    model_seconds: float = 0.0  # the answering model call (the batch's), for the rollout guard's latency
    shadow_seconds: float = 0.0
    canary_error: str | None = None  # the candidate failed: stable answered instead

    def fail(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.error, self.retry_after = (status, message), retry_after


class Batcher:
    def __init__(
        self, host: ModelHost, requests: request_log.RequestLog | None, model_name: str, max_instances: int,
        deliver: Callable[[list[Job], bool], None],
    ):
        self.host, self.requests, self.model_name = host, requests, model_name
        self.max_instances, self.deliver = max_instances, deliver
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._stopped = False
        self.log_failed_at = float("-inf")
        self.log_error: str | None = None
        self.thread = threading.Thread(target=self._run, name="predict", daemon=True)
        self._shadow_pool = ThreadPoolExecutor(1, thread_name_prefix="shadow")

    def start(self) -> None:
        self.thread.start()

    def answer_now(self, jobs: list[Job]) -> None:
        """Answer `jobs` in the calling thread, in batches of at most max_instances instances."""
        batch, count = [], 0
        for job in jobs:
            if batch and count + len(job.instances) > self.max_instances:
                self._process(batch, inline=True)
                batch, count = [], 0
            batch.append(job)
            count += len(job.instances)
        if batch:
            self._process(batch, inline=True)

    def submit(self, job: Job) -> None:
        """Queue `job` for the predict thread."""
        with self._cond:
            self._queue.append(job)
            self._cond.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then end the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self.thread.join(timeout)
        self._shadow_pool.shutdown(wait=False)

    def log_healthy(self) -> bool:
        return time.monotonic() - self.log_failed_at > LOG_ERROR_HOLD_SECONDS

    def _take(self) -> list[Job]:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if not self._queue:
                return []
            jobs = [self._queue.popleft()]
            count = len(jobs[0].instances)
            while self._queue and count + len(self._queue[0].instances) <= self.max_instances:
                job = self._queue.popleft()
                count += len(job.instances)
                jobs.append(job)
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return
            self._process(jobs, inline=False)

    def _process(self, jobs: list[Job], inline: bool) -> None:
        commit: tuple[int, float] | None = None
        try:
            commit = self._answer(jobs)
        except Exception:  # a bug here must not kill the thread nor leave requests hanging
            throttled("batch", logging.ERROR, "unexpected error answering a batch", exc_info=True)
            for job in jobs:
                if job.error is None and not job.logged:  # never answer what is not on disk
                    job.fail(500, "internal error")
        if inline:  # the loop thread counts after sending, before it reads another request
            self.deliver(jobs, inline)
            self._observe(jobs, commit)
        else:  # counted before the answers leave, so a client that has its answer sees it counted
            self._observe(jobs, commit)
            self.deliver(jobs, inline)

    def _observe(self, jobs: list[Job], commit: tuple[int, float] | None) -> None:
        try:
            if commit is not None:
                metrics.LOG_BYTES.inc(commit[0])
                metrics.LOG_COMMIT.observe(commit[1])
            for job in jobs:
                if job.error is None:
                    self._count(job)
        except Exception:
            throttled("metrics", logging.ERROR, "unexpected error counting a batch", exc_info=True)

    def _answer(self, jobs: list[Job]) -> tuple[int, float] | None:
        """Predict and log `jobs`; (bytes, seconds) of the request-log commit, if there was one."""
        groups: dict[int, tuple[LoadedModel, list[Job]]] = {}
        for job in jobs:
            model = job.model
            if model is None:
                try:
                    model = self.host.current()
                except NoModelError as exc:
                    job.fail(503, str(exc))
                    continue
            groups.setdefault(id(model), (model, []))[1].append(job)
        shadows = self._start_shadows(jobs)
        for model, group in groups.values():
            self._predict(model, group)
        self._fall_back(jobs)
        for model, group, call in shadows:
            self._finish_shadow(model, group, call)
        answered = [job for job in jobs if job.error is None]
        commit = self._log(answered) if answered and self.requests is not None else None
        for job in answered:
            job.logged = job.error is None
        return commit

    def _start_shadows(self, jobs: list[Job]) -> list[tuple[LoadedModel, list[Job], Future]]:
        """The shadow calls of `jobs`, one per candidate, started on the shadow thread; none without
        a request log (its records are the shadow's only evidence: nothing could judge its answers)."""
        if self.requests is None:
            return []
        groups: dict[int, tuple[LoadedModel, list[Job]]] = {}
        for job in jobs:
            if job.shadow is not None and job.error is None:
                groups.setdefault(id(job.shadow), (job.shadow, []))[1].append(job)
        return [(model, group, self._shadow_pool.submit(_timed, model, [i for job in group for i in job.instances]))
                for model, group in groups.values()]

    def _finish_shadow(self, model: LoadedModel, group: list[Job], call: Future) -> None:
        try:
            outputs, seconds = call.result()
        except Exception as exc:  # the candidate's failure is evidence against it, never the client's problem
            error = f"{type(exc).__name__}: {exc}"[:300]
            for job in group:
                job.shadow_error = error
            metrics.rollout(rollouts.SHADOW, model.version, "error").inc(sum(len(job.instances) for job in group))
            return
        metrics.model_call(rollouts.SHADOW).observe(seconds)
        start = 0
        for job in group:
            job.shadow_outputs, job.shadow_seconds = outputs[start : start + len(job.instances)], seconds
            start += len(job.instances)

    def _fall_back(self, jobs: list[Job]) -> None:
        """A canary's candidate failed on a request (not its input's fault): stable answers it."""
        failed = [job for job in jobs if job.label == rollouts.CANARY and job.error is not None and job.error[0] == 500]
        if not failed:
            return
        try:
            model = self.host.current()
        except NoModelError:
            return
        for job in failed:
            metrics.rollout(rollouts.CANARY, job.model.version if job.model else "", "error").inc(len(job.instances))
            job.canary_error, job.error, job.label = job.error[1], None, rollouts.STABLE
        self._predict(model, failed)

    def _predict(self, model: LoadedModel, group: list[Job]) -> None:
        instances = [instance for job in group for instance in job.instances]
        started = time.perf_counter()
        try:
            outputs = model.predict(instances)
        except RejectedInput as exc:
            if len(group) == 1:
                group[0].fail(400, str(exc))
            else:  # find the request the model refuses: ask again one by one
                for job in group:
                    self._predict(model, [job])
            return
        except PredictionError as exc:
            for job in group:
                job.fail(500, str(exc))
            return
        seconds = time.perf_counter() - started
        metrics.BATCH.observe(len(instances))
        start = 0
        for job in group:
            job.version, job.model_seconds = model.version, seconds
            job.outputs = outputs[start : start + len(job.instances)]
            start += len(job.instances)

    def _log(self, answered: list[Job]) -> tuple[int, float] | None:
        now = datetime.now(timezone.utc)
        records = [
            request_log.record(job.request_id, i, now, self.model_name, job.version, inst.features, out, inst.out_of_domain,
                               _rollout_fields(job, i) if job.label else None)
            for job in answered
            for i, (inst, out) in enumerate(zip(job.instances, job.outputs))
        ]
        metrics.LOG_PENDING.inc(len(records))
        started = time.perf_counter()
        try:
            written = self.requests.append(records, now)
            self.log_error = None
            return written, time.perf_counter() - started
        except OSError as exc:
            self.log_failed_at = time.monotonic()
            self.log_error = f"the request log cannot be written ({exc})"
            metrics.LOG_ERRORS.inc()
            throttled("log", logging.ERROR, self.log_error)
            for job in answered:
                job.fail(503, f"{self.log_error}; the prediction was not served")
            return None
        finally:
            metrics.LOG_PENDING.dec(len(records))

    def _count(self, job: Job) -> None:
        if job.label:
            metrics.rollout(job.label, job.version, "ok").inc(len(job.instances))
            metrics.model_call(job.label).observe(job.model_seconds)
        if job.shadow_outputs:
            metrics.rollout(rollouts.SHADOW, job.shadow.version, "ok").inc(len(job.instances))
        for instance, output in zip(job.instances, job.outputs):
            metrics.predictions(job.version, str(output["predicted_class"])).inc()
            metrics.probability(job.version).observe(output[PROBABILITY_KEY] if PROBABILITY_KEY in output else max(output[PROBABILITIES_KEY]))
            for feature in instance.out_of_domain:
                metrics.out_of_domain(feature).inc()


def _timed(model: LoadedModel, instances: list[Instance]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    return model.predict(instances), time.perf_counter() - started


def _rollout_fields(job: Job, index: int) -> dict[str, Any]:
    """What a rollout adds to instance `index`'s record: the route's label and the model call's
    time, and who shadowed it with what (or its error), or the canary's error stable answered for."""
    found: dict[str, Any] = {"label": job.label, "model_ms": round(job.model_seconds * 1000, 3)}
    if job.shadow is not None:
        found["shadow_version"] = job.shadow.version
        if job.shadow_outputs:
            found["shadow_output"] = job.shadow_outputs[index]
            found["shadow_ms"] = round(job.shadow_seconds * 1000, 3)
        else:
            found["shadow_error"] = job.shadow_error or "no answer"
    if job.canary_error:
        found["canary_error"] = job.canary_error
    return found
