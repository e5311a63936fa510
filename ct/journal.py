"""The intent journal: a tick writes down what it decided, and each step it reaches, before it acts.

`<home>/ct/intent.json` holds the journal of the newest fired decision, rewritten whole at each
step (temp file, fsync, rename, fsync of the folder: a kill leaves the previous step or the next,
never a torn file):

  decided         the decision (triggers, reason, evidence), before anything is done
  feedback_built  the feedback span it built (its manifest names the decision too)
  launched        the run is about to start (on a cluster: `submitted` names the job once sent)
  ran             the run's outcome, or
  rolled_back     the guard's rollback took effect, or
  rollout_decided the rollout guard's promotion or abort took effect
  done            the decision is in the decision log (ct/decisions.py)

A tick that finds a journal not `done` (its tick was killed: the writer lock died with it) carries
that decision through before deciding anything new (ct/actions.py), so a fired trigger is carried
out exactly once whatever the moment of the kill.

On a cluster (conveyor/kubeflow/cluster_ct.py) `submitted` says, before anything is sent, when the
run is sent (its name) and which versions were ready; then the run sent.

CONVEYOR_CT_KILL_AT=<point> (tests only) makes the tick SIGKILL itself at that point: each step
above once it is durable, and between steps: `feedback_written` (the span is on disk, the journal
does not say so yet), `run_returned`, `rollback_returned`, `rollout_returned` (the action is done, not journaled),
`recorded` (in the decision log, the journal not yet `done`); on a cluster `submitting` (the run's
name is in the bucket, nothing sent), `sent` (sent, the bucket does not know), `submitted` (the run
sent is in the bucket).
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data import spans_io
from pipeline.configs import PipelineConfig

INTENT_FILE = "intent.json"
KILL_VARIABLE = "CONVEYOR_CT_KILL_AT"
DECIDED, FEEDBACK_BUILT, LAUNCHED, RAN, ROLLED_BACK, DONE = "decided", "feedback_built", "launched", "ran", "rolled_back", "done"
ROLLOUT_DECIDED = "rollout_decided"


class JournalError(Exception):
    """The journal file is not one (only a hand edit can make it so): one line naming it."""


@dataclass
class Intent:
    """One fired decision on its way: where it got to, and who carried it."""

    id: str  # the decision's id (Decision.id)
    step: str
    decision: dict[str, Any]  # the Decision as carried so far (ct/decisions.py; from_json reads it back)
    pid: int  # the tick that wrote this step
    updated: float
    resumes: list[dict[str, Any]] = field(default_factory=list)  # each interrupted step and how it went on
    submitted: dict[str, Any] | None = None  # its cluster run: {when, ready_before} before it is sent, then {..., run}

    @property
    def finished(self) -> bool:
        return self.step == DONE


def path(config: PipelineConfig) -> Path:
    return config.ct_dir / INTENT_FILE


def read(config: PipelineConfig) -> Intent | None:
    """The journal of the newest fired decision (None: no decision ever fired here); JournalError
    naming the file if it is not a journal."""
    file = path(config)
    if not file.exists():
        return None
    try:
        return Intent(**json.loads(file.read_text()))
    except (ValueError, TypeError) as exc:
        raise JournalError(f"{file} is not a CT intent journal ({exc}): move it away to let ticks continue") from None


def unfinished(config: PipelineConfig) -> Intent | None:
    """The journal of a decision its tick did not carry through (None if there is none)."""
    intent = read(config)
    return intent if intent is not None and not intent.finished else None


def write(config: PipelineConfig, intent: Intent, step: str, kill: bool = True) -> None:
    """Make `step` of `intent` durable, then (`kill`) stop here if the tests asked to kill at it."""
    intent.step, intent.pid, intent.updated = step, os.getpid(), time.time()
    spans_io.write_text(path(config), json.dumps(asdict(intent), sort_keys=True) + "\n")
    if kill:
        kill_point(step)


def kill_point(point: str) -> None:
    """SIGKILL this process if CONVEYOR_CT_KILL_AT names `point` (the controller's kill sweep)."""
    if os.environ.get(KILL_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)

