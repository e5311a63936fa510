"""The one switch over every speedup, and the library version each was tested on."""
from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform

SWITCH = "CONVEYOR_SPEEDUPS"
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on", "")
# mechanism -> (the package it leans on, the version it was tested on: exact, or a prefix ending in a dot)
TESTED_ON: dict[str, tuple[str, str]] = {
    "deferred_imports": ("tfx", "1.21.0"),
    "gc_tuning": ("python", "CPython 3.11."),  # 3.14's incremental collector reads the thresholds differently
    "beam_memos": ("apache-beam", "2.77.0"),
    "folded_call": ("tensorflow", "2.21.0"),
    "memory_statistics": ("tensorflow-data-validation", "1.21.0"),
}

log = logging.getLogger(__name__)


def enabled() -> bool:
    """The switch: CONVEYOR_SPEEDUPS unset or on. Any other value is a ValueError naming the variable."""
    value = os.environ.get(SWITCH, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{SWITCH}={os.environ[SWITCH]!r}: expected 1 or 0 (also true/false, yes/no, on/off)")


@functools.cache
def installed_version(package: str) -> str | None:
    if package == "python":
        return f"{platform.python_implementation()} {platform.python_version()}"
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def why_off(name: str) -> str | None:
    """Why mechanism `name` must not act (None: it may): the switch, or a library version it was not tested on."""
    if not enabled():
        return f"{SWITCH} is off"
    package, tested = TESTED_ON[name]
    found = installed_version(package)
    if found is None:
        return f"{package} is not installed"
    if found == tested or (tested.endswith(".") and found.startswith(tested)):
        return None
    return f"{package} {found} is not the tested {tested}"


def allowed(name: str) -> bool:
    """May mechanism `name` act? Logged when not."""
    reason = why_off(name)
    if reason is not None:
        log.info("speedup %s is off: %s", name, reason)
    return reason is None


def describe() -> str:
    """One line: each mechanism, on or off and why (for a run's log)."""
    return "speedups: " + "; ".join(f"{name} {'on' if (why := why_off(name)) is None else 'off: ' + why}" for name in TESTED_ON)
