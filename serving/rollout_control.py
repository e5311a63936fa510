"""Deciding a running rollout (pipeline/rollouts.py): promote its candidate or abort it, recorded in ML Metadata.

`conveyor rollout promote|abort` and the CT tick (ct/rollout_guard.py's verdict) call `decide`.
As with a rollback (serving/rollback.py), the record and the state never disagree, whatever is
killed when: the decision is recorded RUNNING, then the state naming it is written (one atomic
replace: every server follows it within poll_seconds), then the record is marked COMPLETE. A
RUNNING record that the state names took effect; one it does not name never did (`effective`).
Deciding again what is already decided the same way changes nothing and says so.
"""
from __future__ import annotations

from dataclasses import dataclass

from ml_metadata.proto import metadata_store_pb2

from metadata import connection, registry, runs
from pipeline import rollouts, versions
from pipeline.configs import PipelineConfig

RUNNING = metadata_store_pb2.Execution.RUNNING
COMPLETE = metadata_store_pb2.Execution.COMPLETE


class NoRollout(LookupError):
    """No rollout governs what serves (none was started, or a newer push or a rollback superseded it)."""


@dataclass(frozen=True)
class Decided:
    rollout: rollouts.Rollout  # the state as written
    changed: bool  # False: it was already decided so


def current(config: PipelineConfig) -> rollouts.Rollout:
    """The rollout that governs what serves now, running or decided; NoRollout if none does."""
    state = versions.serving_state(config.serving_root_uri)
    if state.rollout is None:
        raise NoRollout(f"no rollout under {config.serving_root_uri} (push with --rollout shadow or canary:P to start one)")
    return state.rollout


def decide(config: PipelineConfig, outcome: str, reason: str) -> Decided:
    """Promote (the candidate serves everyone) or abort (stable serves everyone; the candidate is
    retired) the rollout in force; ValueError if it was decided the other way."""
    rollout = current(config)
    if rollout.decided == outcome:
        return Decided(rollout, False)
    if rollout.decided is not None:
        raise ValueError(f"the rollout of {rollout.candidate} was already {rollout.decided} ({rollout.reason}); push again to start another")
    store = connection.open_store(connection.connection_config(config))
    context = runs.pipeline_context(store, config.pipeline_name)
    execution_id = None
    if context is not None:
        properties = {"candidate": rollout.candidate, "stable": rollout.stable, "outcome": outcome, "reason": reason,
                      "policy": str(rollouts.Policy(rollout.mode, rollout.percent))}
        execution_id = runs.record_execution(store, registry.ROLLOUT_TYPE, properties, {}, context, state=RUNNING)
    decided = rollout.decide(outcome, reason, execution_id=execution_id)
    rollouts.write(config.serving_root_uri, decided)
    if execution_id is not None:
        runs.set_execution_state(store, execution_id, COMPLETE)
    return Decided(decided, True)


def effective(config: PipelineConfig) -> list[registry.RecordedRolloutDecision]:
    """The recorded rollout decisions that took effect, oldest first (an interrupted one counts if
    the state names it)."""
    try:
        state = rollouts.read(config.serving_root_uri)
    except ValueError:
        state = None
    named = state.execution_id if state is not None else None
    return [registry.RecordedRolloutDecision.of(e) for e in registry.rollout_decisions(config)
            if e.last_known_state == COMPLETE or (e.last_known_state == RUNNING and e.id == named)]


def describe(rollout: rollouts.Rollout) -> str:
    """One line: the rollout, where it stands."""
    policy = rollouts.Policy(rollout.mode, rollout.percent)
    head = f"rollout of version {rollout.candidate} ({policy}) against stable {rollout.stable}"
    if rollout.running:
        split = f"{rollout.percent} % of requests" if rollout.mode == rollouts.CANARY else "a copy of every request, never returned"
        return f"{head}: running; the candidate answers {split}"
    return f"{head}: {rollout.decided} ({rollout.reason}); {rollout.serving()} serves everyone"
