"""The model currently served, and the atomic swap to a new version.

`refresh()` asks pipeline.versions which version should serve; when it changed, the new version is
loaded completely (1-2 s) *outside* the lock and then swapped in by replacing one reference under
the lock. A request takes the reference once at its start, so requests in flight finish on the
model they started with and none waits for a load. A version that fails to load is reported and
the current model keeps serving.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

from pipeline import versions
from models.saved_model import LoadedModel

log = logging.getLogger(__name__)

# Versions requested explicitly (/versions/{v}:predict) kept loaded besides the served one.
PINNED_CACHE_SIZE = 2


class NoModelError(LookupError):
    """Nothing is pushed yet, or the requested version does not exist."""


class ModelHost:
    def __init__(self, serving_root: Path):
        self.serving_root = Path(serving_root)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # one load at a time
        self._current: LoadedModel | None = None
        self._pinned: OrderedDict[str, LoadedModel] = OrderedDict()
        self.swaps = 0
        self.last_error: str | None = None
        self._failed: str | None = None  # a version that failed to load is not retried

    def current(self) -> LoadedModel:
        with self._lock:
            model = self._current
        if model is None:
            raise NoModelError(f"no servable version under {self.serving_root}")
        return model

    def version(self, version: str) -> LoadedModel:
        """A specific pushed version (loaded on first use, a few kept)."""
        with self._lock:
            if self._current is not None and self._current.version == version:
                return self._current
            if version in self._pinned:
                self._pinned.move_to_end(version)
                return self._pinned[version]
        if version not in versions.ready_versions(self.serving_root):
            raise NoModelError(f"version {version} is not a pushed version")
        model = LoadedModel.load(self.serving_root / version, version)
        with self._lock:
            self._pinned[version] = model
            while len(self._pinned) > PINNED_CACHE_SIZE:
                self._pinned.popitem(last=False)
        return model

    def refresh(self) -> bool:
        """Serve the version pipeline.versions names now; True if a swap happened."""
        with self._refresh_lock:
            try:
                wanted = versions.serving_version(self.serving_root)
            except ValueError as exc:  # an unreadable rollback pointer: keep serving what we serve
                self.last_error = str(exc)
                log.error("%s", exc)
                return False
            current = self._current
            if wanted is None or wanted == self._failed or (current is not None and current.version == wanted):
                return False
            try:
                model = LoadedModel.load(self.serving_root / wanted, wanted)
            except Exception as exc:  # a broken push must not take the server down
                self._failed = wanted
                self.last_error = f"version {wanted} failed to load: {exc}"
                log.error("%s", self.last_error)
                return False
            with self._lock:
                self._current = model
                self.swaps += 1
            self.last_error = None
            log.info("serving version %s (was %s)", wanted, current.version if current else "none")
            return True

    def watch(self, interval: float, stop: threading.Event) -> threading.Thread:
        """Refresh every `interval` seconds in a daemon thread until `stop` is set."""

        def loop() -> None:
            while not stop.wait(interval):
                self.refresh()

        thread = threading.Thread(target=loop, name="model-watch", daemon=True)
        thread.start()
        return thread
