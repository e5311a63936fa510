"""The model versions one server process holds: which answers, how they are loaded and swapped.

`refresh()` (the watcher thread, every poll_seconds) asks pipeline.versions which version should
serve. A new one is loaded completely *outside* the lock and swapped in by replacing one reference
under it; requests in flight finish on the model they started with, none waits for a load.

Faults never stop serving:
- any error of a refresh (an unreadable serving root, out of descriptors, a permission error) is
  counted, logged at most once per minute, and the next poll tries again: the watcher never dies;
- a version that fails to load is never served: the last good model keeps serving (at start, the
  newest older version that loads) and the failed one is retried with exponential backoff
  (2 x poll_seconds, doubling, at most load_retry_max_seconds), its state END with the reason;
- a corrupt rollback pointer is reported (`pointer_error`) and ignored: the newest version serves.

While a rollout runs (pipeline/rollouts.py) the candidate is loaded after the serving (stable)
version and held beside it, outside the LRU, until the rollout is decided or superseded: the
requests it answers (canary) or shadows never wait for it to load. A promoted candidate is
already loaded when the serving version swaps to it.

Versions other than the serving one (`/versions/{v}` requests) are loaded by the same single
loader thread, one at a time and never twice at once, and kept in an LRU of `max_extra_versions`.
An entry used within the last EXTRA_MIN_IDLE_SECONDS is not evicted: a client cycling through
more versions than fit gets 503 for the ones that do not, instead of a load per request. The
version replaced by a swap stays loaded as an extra one, so a rollback to it swaps at once.
Once a version is loaded it serves; the loader thread then folds its model call
(`LoadedModel.fold`), which later calls use, so folding never delays a swap (`fold=False`,
`conveyor serve --no-fold`: never). Only versions that serve are folded: TensorFlow keeps ~2 MB per folded version after it is dropped
(docs/serving.md), and the versions clients ask for by number must not make that grow.

States (TF Serving's names, GET /v1/models/{name}): AVAILABLE loaded; LOADING; START complete on
disk and not loaded; END failed to load (error_message says why and when it is retried).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from models.saved_model import LoadedModel
from pipeline import rollouts, versions
from serving import metrics
from serving.log_throttle import Throttled

log = logging.getLogger(__name__)
throttled = Throttled(log, interval=60.0)

AVAILABLE, LOADING, START, END = "AVAILABLE", "LOADING", "START", "END"
EXTRA_MIN_IDLE_SECONDS = 60.0


class NoModelError(LookupError):
    """Nothing is pushed yet, or the requested version does not exist."""


class VersionUnavailable(RuntimeError):
    """The version exists but cannot answer now (loading, failed, or no room): retry later."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Failure:
    error: str
    attempts: int
    retry_at: float  # time.monotonic()


@dataclass(frozen=True)
class VersionStatus:
    version: str
    state: str
    error: str = ""


class ModelHost:
    def __init__(
        self, serving_root: Path, poll_seconds: float = 2.0, max_extra_versions: int = 2,
        retry_max_seconds: float = 300.0, loader: Callable[[Path, str], LoadedModel] = LoadedModel.load,
        fold: bool = True,
    ):
        self.serving_root = Path(serving_root)
        self.poll_seconds = poll_seconds
        self.max_extra = max_extra_versions
        self.retry_max = retry_max_seconds
        self._loader = loader
        self.fold = fold  # fold serving versions' model calls (`conveyor serve --no-fold`: never)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._current: LoadedModel | None = None
        self._extra: OrderedDict[str, tuple[LoadedModel, float]] = OrderedDict()  # version -> (model, last use)
        self._loading: dict[str, Future] = {}
        self._failures: dict[str, Failure] = {}
        self._load_pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self.ready: list[str] = []  # as of the last refresh
        self.swaps = 0
        self.last_error: str | None = None  # the last refresh's problem, None when it went well
        self.pointer_error: str | None = None
        self.watcher: threading.Thread | None = None
        self._rollout: tuple[rollouts.Rollout, LoadedModel | None] | None = None  # running, and its loaded candidate

    # answering
    @property
    def serving(self) -> LoadedModel | None:
        return self._current

    def current(self) -> LoadedModel:
        model = self._current
        if model is None:
            raise NoModelError(self.no_model_reason())
        return model

    def rollout(self) -> tuple[rollouts.Rollout, LoadedModel | None] | None:
        """The running rollout this process follows and its candidate (None until it is loaded)."""
        return self._rollout

    def no_model_reason(self) -> str:
        return self.last_error or f"no servable version under {self.serving_root}"

    def version(self, version: str) -> LoadedModel | Future:
        """A specific version: loaded, or a Future of its load (started in the background)."""
        now = time.monotonic()
        with self._lock:
            current = self._current
            if current is not None and current.version == version:
                return current
            candidate = self._rollout[1] if self._rollout else None
            if candidate is not None and candidate.version == version:
                return candidate
            if version in self._extra:
                model, _ = self._extra[version]
                self._extra[version] = (model, now)
                self._extra.move_to_end(version)
                return model
            if version not in self.ready:
                raise NoModelError(f"version {version} is not a pushed version (have: {', '.join(self.ready) or 'none'})")
            failure = self._failures.get(version)
            if failure is not None and now < failure.retry_at:
                raise VersionUnavailable(
                    f"version {version} failed to load ({failure.error}); next attempt in {failure.retry_at - now:.0f} s",
                    failure.retry_at - now,
                )
            if version in self._loading:
                return self._loading[version]
            if any(v != (current.version if current else None) for v in self._loading):
                raise VersionUnavailable("another version is being loaded; retry in a few seconds", 2.0)
            if len(self._extra) >= self.max_extra and not self._evictable(now):
                raise VersionUnavailable(
                    f"{len(self._extra)} versions besides the serving one are loaded and in use "
                    f"(max_extra_versions={self.max_extra}); retry later", EXTRA_MIN_IDLE_SECONDS,
                )
            future = self._start_load(version)
        future.add_done_callback(lambda done: self._keep_extra(version, done))
        return future

    def _evictable(self, now: float) -> bool:
        return any(now - used >= EXTRA_MIN_IDLE_SECONDS for _, used in self._extra.values())

    def _keep_extra(self, version: str, done: Future) -> None:
        if done.exception() is None:
            with self._lock:
                if self._current is None or self._current.version != version:
                    self._add_extra(done.result(), time.monotonic())

    def _add_extra(self, model: LoadedModel, now: float) -> None:
        """Under the lock: keep `model` loaded, evicting the least recently used idle entries."""
        self._extra[model.version] = (model, now)
        self._extra.move_to_end(model.version)
        while len(self._extra) > self.max_extra:
            oldest = next(iter(self._extra))
            del self._extra[oldest]

    # loading
    def _start_load(self, version: str) -> Future:
        """Under the lock: the single-flight load of `version`."""
        future = self._load_pool.submit(self._load, version)
        self._loading[version] = future
        return future

    def _load(self, version: str) -> LoadedModel:
        started = time.monotonic()
        try:
            model = self._loader(self.serving_root / version, version)
        except BaseException as exc:
            with self._lock:
                self._loading.pop(version, None)
                previous = self._failures.get(version)
                attempts = previous.attempts + 1 if previous else 1
                delay = min(self.poll_seconds * 2**attempts, self.retry_max)
                self._failures[version] = Failure(f"{type(exc).__name__}: {exc}"[:500], attempts, time.monotonic() + delay)
            metrics.LOADS.labels(version, "failed").inc()
            log.error("version %s failed to load (attempt %d, next in %.0f s): %s", version, attempts, delay, exc)
            raise
        with self._lock:
            self._loading.pop(version, None)
            self._failures.pop(version, None)
        metrics.LOADS.labels(version, "ok").inc()
        metrics.LOAD_SECONDS.observe(time.monotonic() - started)
        return model

    def _fold(self, model: LoadedModel) -> None:
        """On the loader thread, once `model` serves: its faster call, which it answers with from then on."""
        started = time.monotonic()
        if model.fold():
            log.info("version %s answers through its folded graph (%.1f s to fold and check)", model.version, time.monotonic() - started)

    def _get_or_load(self, version: str) -> LoadedModel:
        """Blocking (watcher thread): `version` from the extras or the rollout, or loaded (sharing a load in flight)."""
        with self._lock:
            candidate = self._rollout[1] if self._rollout else None
            if candidate is not None and candidate.version == version:
                return candidate
            if version in self._extra:
                return self._extra.pop(version)[0]
            future = self._loading.get(version) or self._start_load(version)
        return future.result()

    # watching
    def refresh(self) -> bool:
        """Serve the version pipeline.versions names now, and hold the candidate of a running
        rollout (pipeline/rollouts.py) beside it; True if a swap happened."""
        with self._refresh_lock:
            try:
                state = versions.serving_state(self.serving_root)
            except Exception as exc:  # I/O error reading the root, the pointer or the rollout: keep what we serve
                self._watch_error("serving_root", f"cannot read {self.serving_root}: {type(exc).__name__}: {exc}")
                return False
            swapped = self._refresh_serving(state)
            self._follow_rollout(state.rollout if state.rollout is not None and state.rollout.running else None)
            return swapped

    def _follow_rollout(self, rollout: rollouts.Rollout | None) -> None:
        """Hold `rollout`'s candidate loaded (the serving version first: this runs after its swap);
        a candidate that fails to load takes no traffic, and is retried as any failed version."""
        held = self._rollout
        if rollout is None:
            if held is not None:
                with self._lock:
                    self._rollout = None
                    if held[1] is not None and (self._current is None or self._current.version != held[1].version):
                        self._add_extra(held[1], time.monotonic())  # promoted: the swap finds it loaded
                log.info("rollout of version %s ended", held[0].candidate)
            return
        if held is not None and held[1] is not None and held[1].version == rollout.candidate:
            self._rollout = (rollout, held[1])
            return
        self._rollout = (rollout, None)
        if not self._due(rollout.candidate):
            return
        try:
            model = self._get_or_load(rollout.candidate)
        except Exception:
            return
        with self._lock:
            self._extra.pop(model.version, None)
            self._rollout = (rollout, model)
        log.info("version %s loaded as the %s of a rollout (stable %s)", model.version, rollout.label, rollout.stable)
        if self.fold and not model.folded:
            try:
                self._load_pool.submit(self._fold, model)
            except RuntimeError:  # closed meanwhile
                pass

    def _refresh_serving(self, state: versions.ServingState) -> bool:
        """Swap to the version `state` names (under the refresh lock); True if it swapped."""
        self.ready = state.ready
        if state.pointer_error != self.pointer_error and state.pointer_error:
            metrics.WATCH_ERRORS.labels("rollback_pointer").inc()
            log.error("%s", state.pointer_error)
        self.pointer_error = state.pointer_error
        if state.version is None:
            self.last_error = None if self._current else f"no servable version under {self.serving_root}"
            return False
        current = self._current
        if current is not None and current.version == state.version:
            self.last_error = None
            return False
        for candidate in self._candidates(state, current):
            if not self._due(candidate):
                continue
            try:
                model = self._get_or_load(candidate)
            except Exception:
                continue
            self._swap(model)
            return True
        failure = self._failures.get(state.version)
        if failure is not None:
            self.last_error = f"version {state.version} failed to load: {failure.error}"
        return False

    def _candidates(self, state: versions.ServingState, current: LoadedModel | None) -> list[str]:
        """The version to serve, then (only while nothing serves) older ones, newest first."""
        if current is not None:
            return [state.version]
        older = [v for v in reversed(state.ready) if int(v) < int(state.version)]
        return [state.version, *older]

    def _due(self, version: str) -> bool:
        failure = self._failures.get(version)
        return failure is None or time.monotonic() >= failure.retry_at

    def _swap(self, model: LoadedModel) -> None:
        with self._lock:
            previous, self._current = self._current, model
            self._extra.pop(model.version, None)
            if previous is not None:
                self._add_extra(previous, time.monotonic())
            self.swaps += 1
        self.last_error = None
        metrics.SERVING_VERSION.set(int(model.version))
        log.info("serving version %s (was %s)", model.version, previous.version if previous else "none")
        if self.fold and not model.folded:
            try:
                self._load_pool.submit(self._fold, model)
            except RuntimeError:  # closed meanwhile
                pass

    def _watch_error(self, kind: str, message: str) -> None:
        self.last_error = message
        metrics.WATCH_ERRORS.labels(kind).inc()
        throttled(kind, logging.ERROR, message)

    def watch(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> threading.Thread:
        """Refresh every poll_seconds in a daemon thread until `stop` is set; survives any error."""

        def loop() -> None:
            while not stop.wait(self.poll_seconds):
                try:
                    self.refresh()
                    if on_tick is not None:
                        on_tick()
                except Exception as exc:
                    self._watch_error("watcher", f"model watcher error (it keeps running): {type(exc).__name__}: {exc}")

        self.watcher = threading.Thread(target=loop, name="model-watch", daemon=True)
        self.watcher.start()
        return self.watcher

    def alive(self) -> bool:
        """The watcher thread runs (liveness; a long model load is not a hang)."""
        return self.watcher is not None and self.watcher.is_alive()

    # reporting
    def statuses(self) -> list[VersionStatus]:
        """Every ready version and every version that failed, newest first, with its state."""
        now = time.monotonic()
        with self._lock:
            current = self._current.version if self._current else None
            candidate = self._rollout[1] if self._rollout else None
            loaded = {current, *self._extra, candidate.version if candidate else None}
            loading = set(self._loading)
            failures = dict(self._failures)
            known = set(self.ready) | loaded | set(failures)
        found = []
        for version in sorted((v for v in known if v), key=int, reverse=True):
            if version in loaded:
                found.append(VersionStatus(version, AVAILABLE))
            elif version in loading:
                found.append(VersionStatus(version, LOADING))
            elif version in failures:
                f = failures[version]
                retry = max(0.0, f.retry_at - now)
                found.append(VersionStatus(version, END, f"failed to load ({f.attempts} attempts, next in {retry:.0f} s): {f.error}"))
            else:
                found.append(VersionStatus(version, START))
        return found

    def snapshot(self) -> dict:
        """What this process serves, for its status file (serving/status.py)."""
        return {
            "pid": os.getpid(),
            "serving": self._current.version if self._current else None,
            "swaps": self.swaps,
            "versions": [s.__dict__ for s in self.statuses()],
            "error": self.last_error,
            "pointer_error": self.pointer_error,
            "rollout": self._described_rollout(),
        }

    def _described_rollout(self) -> dict | None:
        held = self._rollout
        if held is None:
            return None
        rollout, model = held
        return {"stable": rollout.stable, "candidate": rollout.candidate, "mode": rollout.mode,
                "percent": rollout.percent, "candidate_loaded": model is not None}

    def close(self) -> None:
        self._load_pool.shutdown(wait=False, cancel_futures=True)
