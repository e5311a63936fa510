"""The CT controller's decision log: every tick, fired or not, with the evidence it considered.

Kept twice: as JSON lines in <home>/ct/decisions.jsonl (appended with fsync: readable with any
tool) and in ML Metadata as `conveyor.CTDecision` executions (metadata/ct_records.py), next to
the runs they launched, so a model's lineage names the decision that launched its run.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.spans_io import UPSTREAM
from metadata import ct_records
from pipeline.configs import PipelineConfig

LOG_FILE = "decisions.jsonl"

# Outcomes: of a launched run (OK, BLOCKED, CRASHED), of a tick that found another writer (BUSY),
# of a tick whose post-push guard put the previous version back (ROLLED_BACK).
OK, BLOCKED, CRASHED, BUSY, ROLLED_BACK = "ok", "blocked", "crashed", "busy", "rolled_back"
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
    outcome: str | None = None  # OK | BLOCKED | CRASHED | BUSY | ROLLED_BACK
    detail: str | None = None  # run error, blessing, pushed path
    serving_before: str | None = None  # the version serving when the tick decided
    pushed_version: str | None = None  # what the launched run pushed
    feedback: dict[str, Any] | None = None  # manifest of the feedback span this decision built
    rollback: dict[str, Any] | None = None  # {from, to, reason, execution_id} when the guard rolled back
    alerts: list[str] = field(default_factory=list)  # what needs a person's attention, acted on or not

    @property
    def launched(self) -> bool:
        return self.fired and self.outcome in LAUNCHED


def log_path(config: PipelineConfig) -> Path:
    return config.ct_dir / LOG_FILE


_FIELDS = {f.name for f in dataclasses.fields(Decision)}


def history(config: PipelineConfig) -> list[Decision]:
    path = log_path(config)
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Decision(**{k: v for k, v in item.items() if k in _FIELDS}) for item in lines]


def record(config: PipelineConfig, decision: Decision) -> None:
    path = log_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
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
        },
    )
