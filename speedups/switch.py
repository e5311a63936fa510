"""The one switch over every speedup, and the version check each makes before it acts."""
from __future__ import annotations

import importlib.metadata
import logging
import os
import platform

SWITCH = "CONVEYOR_SPEEDUPS"
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on", "")

log = logging.getLogger(__name__)
_said: set[str] = set()


def enabled() -> bool:
    """The switch: CONVEYOR_SPEEDUPS unset or on. Any other value is a ValueError naming the variable."""
    value = os.environ.get(SWITCH, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{SWITCH}={os.environ[SWITCH]!r}: expected 1 or 0 (also true/false, yes/no, on/off)")


def installed_version(package: str) -> str | None:
    if package == "python":
        return f"{platform.python_implementation()} {platform.python_version()}"
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def allowed(name: str, package: str, tested: str) -> bool:
    """May mechanism `name` act? Only with the switch on and `package` at a version starting with
    `tested` (e.g. "2.77.0", or "CPython 3.11." for the interpreter). Logs once why not."""
    if not enabled():
        reason = f"{SWITCH} is off"
    else:
        found = installed_version(package)
        if found is not None and (found == tested or found.startswith(tested.rstrip(".") + ".")):
            return True
        reason = f"{package} {found or 'is not installed'}{'' if found is None else ' is not the tested ' + tested}"
    if name not in _said:
        _said.add(name)
        log.info("speedup %s is off: %s", name, reason)
    return False
