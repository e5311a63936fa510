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
A request is answered only after its records are on disk; if they cannot be written it gets 503
and nothing is answered for it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from models.features import PROBABILITIES_KEY, PROBABILITY_KEY
from models.instances import Instance
from models.saved_model import LoadedModel, PredictionError, RejectedInput
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
        for model, group in groups.values():
            self._predict(model, group)
        answered = [job for job in jobs if job.error is None]
        commit = self._log(answered) if answered and self.requests is not None else None
        for job in answered:
            job.logged = job.error is None
        return commit

    def _predict(self, model: LoadedModel, group: list[Job]) -> None:
        instances = [instance for job in group for instance in job.instances]
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
        metrics.BATCH.observe(len(instances))
        start = 0
        for job in group:
            job.version = model.version
            job.outputs = outputs[start : start + len(job.instances)]
            start += len(job.instances)

    def _log(self, answered: list[Job]) -> tuple[int, float] | None:
        now = datetime.now(timezone.utc)
        records = [
            request_log.record(job.request_id, i, now, self.model_name, job.version, inst.features, out, inst.out_of_domain)
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
        for instance, output in zip(job.instances, job.outputs):
            metrics.predictions(job.version, str(output["predicted_class"])).inc()
            metrics.probability(job.version).observe(output[PROBABILITY_KEY] if PROBABILITY_KEY in output else max(output[PROBABILITIES_KEY]))
            for feature in instance.out_of_domain:
                metrics.out_of_domain(feature).inc()
