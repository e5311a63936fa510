"""Progressive delivery: the rollout policy of a push and the rollout state in the serving root.

A policy (`rollout` setting, `conveyor run --rollout`, `ct_rollout` for CT's runs) says how a newly
published version takes traffic:

    direct      at once, all of it (the newest version serves)
    shadow      the version serving now keeps answering; the new one answers a copy of every
                request, logged beside the answer, never returned
    canary:P    P % of requests (1-99, by a stable hash of the request id) are answered by the new one

Publish (pipeline/versions.py) writes `<serving_root>/ROLLOUT.json` *before* it renames a shadow or
canary version into place: `{"stable", "candidate", "mode", "percent", "started", "decided",
"decided_at", "reason", "execution_id"}`. `decided` is null while the rollout runs, then "promoted" (the candidate
serves all traffic) or "aborted" (the candidate is retired; stable keeps serving). Every write is
one file replaced atomically (temp file fsync'ed, renamed, folder fsync'ed; on object storage one
object write), so a kill -9 at any point leaves the old state or the new one. The state governs
what serves only while its candidate is the newest published version and its stable one is still
published: a newer push supersedes it, as it supersedes a rollback.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from data import files, spans_io

STATE_FILE = "ROLLOUT.json"
DIRECT, SHADOW, CANARY = "direct", "shadow", "canary"
PROMOTED, ABORTED = "promoted", "aborted"
STABLE = "stable"  # the label of the version serving outside the rollout
KILL_VARIABLE = "CONVEYOR_ROLLOUT_KILL_AT"  # crash-safety tests: SIGKILL at a point of write()
EXPECTED = "expected direct, shadow or canary:P with P a whole percentage from 1 to 99"


@dataclass(frozen=True)
class Policy:
    mode: str
    percent: int = 0  # canary only

    def __str__(self) -> str:
        return f"{CANARY}:{self.percent}" if self.mode == CANARY else self.mode


def parse_policy(text: str) -> Policy:
    """`direct`, `shadow` or `canary:P`; ValueError (EXPECTED) otherwise."""
    mode, _, percent = text.strip().lower().partition(":")
    if mode in (DIRECT, SHADOW) and not percent:
        return Policy(mode)
    if mode == CANARY and percent.isdigit() and 1 <= int(percent) <= 99:
        return Policy(CANARY, int(percent))
    raise ValueError(EXPECTED)


@dataclass(frozen=True)
class Rollout:
    stable: str
    candidate: str
    mode: str  # SHADOW or CANARY
    percent: int
    started: float
    decided: str | None = None  # None while it runs, PROMOTED or ABORTED
    decided_at: float | None = None
    reason: str = ""
    execution_id: int | None = None  # the decision's record in ML Metadata (serving/rollout_control.py)

    @property
    def running(self) -> bool:
        return self.decided is None

    @property
    def label(self) -> str:
        """The candidate's label while it runs: "canary" or "shadow"."""
        return self.mode

    def in_force(self, ready: list[str]) -> bool:
        """It governs what serves: its candidate is the newest published version, its stable one published."""
        return bool(ready) and ready[-1] == self.candidate and self.stable in ready

    def serving(self) -> str:
        """The version that answers clients outside the canary share."""
        return self.candidate if self.decided == PROMOTED else self.stable

    def to_candidate(self, request_id: str) -> bool:
        """A canary's split: the request goes to the candidate (the same id always goes the same way)."""
        return self.running and self.mode == CANARY and bucket(request_id) < self.percent * 100

    def decide(self, outcome: str, reason: str, now: float | None = None, execution_id: int | None = None) -> "Rollout":
        return replace(self, decided=outcome, decided_at=time.time() if now is None else now, reason=reason,
                       execution_id=execution_id)


def bucket(request_id: str) -> int:
    """0-9999 from a hash of the request id: stable across processes, restarts and hosts."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big") % 10_000


def start(stable: str, candidate: str, policy: Policy, now: float | None = None) -> Rollout:
    return Rollout(stable, candidate, policy.mode, policy.percent, time.time() if now is None else now)


def _path(serving_root: str | Path) -> str:
    return os.path.join(str(serving_root), STATE_FILE)


def read(serving_root: str | Path) -> Rollout | None:
    """The rollout state; None if there is none, ValueError if it is not a valid one, OSError if it cannot be read."""
    path = _path(serving_root)
    if not files.exists(path):
        return None
    try:
        text = files.read_bytes(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # fileio raises TensorFlow's errors for some file systems
        raise OSError(f"cannot read {path}: {exc}") from exc
    try:
        data: dict[str, Any] = json.loads(text)
        found = Rollout(
            str(data["stable"]), str(data["candidate"]), str(data["mode"]), int(data["percent"]), float(data["started"]),
            data.get("decided"), data.get("decided_at"), str(data.get("reason", "")), data.get("execution_id"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a valid rollout state ({type(exc).__name__}: {exc})") from None
    if not (found.stable.isdigit() and found.candidate.isdigit() and found.mode in (SHADOW, CANARY)
            and found.decided in (None, PROMOTED, ABORTED)):
        raise ValueError(f"{path} is not a valid rollout state: {data!r:.200}")
    return found


def write(serving_root: str | Path, rollout: Rollout) -> None:
    """Replace the rollout state atomically and durably (one object write on object storage)."""
    body = json.dumps(asdict(rollout), sort_keys=True)
    root = str(serving_root)
    if spans_io.is_uri(root):
        from tfx.utils import io_utils

        io_utils.write_string_file(_path(root), body)
        return
    os.makedirs(root, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".rollout-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(body)
            out.flush()
            os.fchmod(out.fileno(), 0o644)  # a server running as another user reads it
            os.fsync(out.fileno())
        kill_point("before_rename")
        os.replace(tmp, _path(root))
        kill_point("after_rename")
        files.fsync(root)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def kill_point(name: str) -> None:
    """SIGKILL this process if CONVEYOR_ROLLOUT_KILL_AT names `name` (tests/test_rollout.py's kill test)."""
    if os.environ.get(KILL_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)

