"""Logging that stays quiet under pressure: a recurring message at most once per interval."""
from __future__ import annotations

import logging
import time


class Throttled:
    """`throttled(key, level, message)` logs at most once per `interval` seconds per key, and the
    next line it lets through says how many were suppressed (a descriptor shortage or a flood of
    bad clients must not write megabytes of identical lines)."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0):
        self.logger, self.interval = logger, interval
        self._state: dict[str, tuple[float, int]] = {}

    def __call__(self, key: str, level: int, message: str, *, exc_info: bool = False) -> None:
        now = time.monotonic()
        last, suppressed = self._state.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._state[key] = (last, suppressed + 1)
            return
        self._state[key] = (now, 0)
        if suppressed:
            message = f"{message} ({suppressed} more like this in the last {now - last:.0f} s)"
        self.logger.log(level, "%s", message, exc_info=exc_info)
