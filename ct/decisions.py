"""The CT controller's decision log: every tick, fired or not, with the evidence it considered.

Kept twice: as JSON lines in <home>/ct/decisions.jsonl (appended with fsync: readable with any
tool) and in ML Metadata as `conveyor.CTDecision` executions (metadata/ct_records.py), next to
the runs they launched, so a model's lineage names the decision that launched its run. A line a
killed tick left unfinished is not a decision: readers skip it and the next append drops it
(that tick's journal, ct/journal.py, still holds the decision, and the next tick records it).
Reading the log imports no TensorFlow: `conveyor ct status` answers at once.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.spans_io import UPSTREAM, label
from metadata import ct_records
from pipeline.configs import PipelineConfig

LOG_FILE = "decisions.jsonl"

# Outcomes: of a launched run (OK, BLOCKED, CRASHED), of a tick that found another writer (BUSY),
# of a tick whose post-push guard put the previous version back (ROLLED_BACK), of a tick whose
# rollout guard promoted or aborted the running rollout (PROMOTED, ABORTED).
OK, BLOCKED, CRASHED, BUSY, ROLLED_BACK = "ok", "blocked", "crashed", "busy", "rolled_back"
PROMOTED, ABORTED = "promoted", "aborted"
LAUNCHED = (OK, BLOCKED, CRASHED)


@dataclass
class Decision:
    time: float  # seconds since the epoch (the controller's clock)
    fired: bool  # the tick acted: launched a run, or rolled back
    triggers: list[str]  # triggers that fired, in priority order; [] when not fired
    reason: str  # one line a person can read
    signals: dict[str, Any] = field(default_factory=dict)  # every input considered, with its evidence
    span: int | None = None  # span the launched run ingested
    span_source: str = UPSTREAM  # its namespace (data/spans_io.py)
    attempt: int = 0  # 1 for a first launch of a span, 2 for its retry
    run_id: str | None = None
    outcome: str | None = None  # OK | BLOCKED | CRASHED | BUSY | ROLLED_BACK | PROMOTED | ABORTED
    detail: str | None = None  # run error, blessing, pushed path
    serving_before: str | None = None  # the version serving when the tick decided
    pushed_version: str | None = None  # what the launched run pushed
    pushed_by_run: str | None = None  # the run that pushed it, when not run_id: one a killed tick started (run_id's re-run was cached)
    feedback: dict[str, Any] | None = None  # manifest of the feedback span this decision built
    rollback: dict[str, Any] | None = None  # {from, to, reason, execution_id} when the guard rolled back
    alerts: list[str] = field(default_factory=list)  # what needs a person's attention, acted on or not
    id: str | None = None  # names a fired decision in its journal (ct/journal.py) and its feedback span
    resumed: list[dict[str, Any]] = field(default_factory=list)  # each interruption and how a later tick went on
    tune: bool = False  # the launched run searched the hyperparameters first (ct/retune.py says why)
    on_estimate: bool = False  # it acted on an estimated performance drop (CBPE, before the labels arrived)

    @property
    def launched(self) -> bool:
        return self.fired and self.outcome in LAUNCHED


def log_path(config: PipelineConfig) -> Path:
    return config.ct_dir / LOG_FILE


_FIELDS = {f.name for f in dataclasses.fields(Decision)}


def from_json(item: dict[str, Any]) -> Decision:
    """A Decision from its JSON form (keys an older or newer log has and this one does not, ignored)."""
    return Decision(**{k: v for k, v in item.items() if k in _FIELDS})


def history(config: PipelineConfig) -> list[Decision]:
    path = log_path(config)
    if not path.exists():
        return []
    *complete, _torn_or_empty = path.read_text().split("\n")
    return [from_json(json.loads(line)) for line in complete if line.strip()]


def _drop_torn_line(fd: int) -> None:
    """Cut the log back to its last complete line (what a tick killed while appending left)."""
    size = os.lseek(fd, 0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        if start + len(chunk) == size and chunk.endswith(b"\n"):
            return
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def recorded(config: PipelineConfig, decision_id: str) -> Decision | None:
    """The logged decision of that id (None: not in the log)."""
    return next((d for d in reversed(history(config)) if d.id == decision_id), None)


def record(config: PipelineConfig, decision: Decision) -> None:
    """Append `decision` to the log (durable), then to ML Metadata."""
    path = log_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        _drop_torn_line(fd)
        os.write(fd, (json.dumps(asdict(decision), sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    record_in_metadata(config, decision)


def record_in_metadata(config: PipelineConfig, decision: Decision) -> None:
    """The decision's `conveyor.CTDecision` execution (metadata/ct_records.py)."""
    ct_records.record_decision(
        config,
        {
            "time": float(decision.time),
            "triggers": ",".join(decision.triggers),
            "reason": decision.reason,
            "signals": json.dumps(decision.signals, sort_keys=True),
            "run_id": decision.run_id or "",
            "outcome": decision.outcome or "",
            "fired": int(decision.fired),
            "span": decision.span or 0,
            "span_source": decision.span_source,
            "attempt": decision.attempt,
            "pushed_version": decision.pushed_version or "",
            "feedback": json.dumps(decision.feedback or {}, sort_keys=True),
            "rollback": json.dumps(decision.rollback or {}, sort_keys=True),
            "decision_id": decision.id or "",
            "pushed_by_run": decision.pushed_by_run or "",
            "resumed": json.dumps(decision.resumed, sort_keys=True),
        },
    )


def format_decision(d: Decision) -> str:
    """A decision for a person: what fired and why, what was done, how an interruption was resumed, alerts."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.time))
    head = f"{stamp}  {'FIRED ' + '+'.join(d.triggers) if d.fired else 'no run'}: {d.reason}"
    if d.outcome in (ROLLED_BACK, PROMOTED, ABORTED) or (d.fired and d.triggers[0] == "rollout"):
        head += f"\n    {d.detail}"
    elif d.fired:
        head += f"\n    span {label(d.span, d.span_source) if d.span is not None else '-'} -> {d.outcome} (run {d.run_id})"
        if d.detail:
            head += "".join(f"\n    {line}" for line in d.detail.splitlines())
    if d.on_estimate:
        head += "\n    acted on an ESTIMATE: the accuracy was estimated before its labels arrived (CBPE), not measured"
    for r in d.resumed:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        head += f"\n    RESUMED {when}: the tick (pid {r['interrupted_pid']}) was interrupted at {r['step']}; {r['how']}"
    head += "".join(f"\n    ALERT: {a}" for a in d.alerts)
    return head
