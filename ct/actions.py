"""Carrying out a fired decision one journaled step at a time, and finishing one a killed tick left.

A fired decision is journaled (ct/journal.py) before anything is done, and after each step:
  rollout promote or abort the running rollout (serving/rollout_control.py)  -> rollout_decided
  guard   roll back to the version the serving one replaced (serving/rollback.py)  -> rolled_back
  a run   build the feedback span if the decision needs one (its manifest names the decision)
          -> feedback_built; -> launched; the Launch (ct/launcher.py) -> ran
then it is recorded (ct/decisions.py) and the journal marked done.

A tick first resumes an unfinished journal (its tick was killed; the writer lock died with it),
from the step it reached:
  decided          a rollback: recorded if it took effect, done now if the judged version still
                   serves, else not done and the decision says why. A run: the feedback span this
                   decision built if it is on disk, else built now from the traffic as it was when
                   decided (never a second span from the same traffic); then launched
  feedback_built   the span it built is launched
  launched         the same span is launched again: a run is crash-safe, what finished is cached,
                   and Publish makes a recorded push visible once (docs/pipeline.md); a cluster
                   job already submitted (`submitted`) is followed instead (conveyor/kubeflow/cluster_ct.py)
                   A rollout decision: done again (deciding the same way twice changes nothing)
  ran, rolled_back, rollout_decided  the outcome is recorded
A decision already in the log only gets its ML Metadata record checked and its journal closed.
One interrupted MAX_RESUMES times is not tried again: a run is recorded as crashed (the retry rule
takes over), anything else with an alert. Every resumption is kept on the decision (`resumed`).
"""
from __future__ import annotations

import os
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ct import decisions, feedback, guard, journal, rollout_guard
from ct.decisions import ABORTED, BLOCKED, CRASHED, OK, PROMOTED, ROLLED_BACK, Decision
from ct.launcher import Launch
from data.spans_io import label
from metadata import ct_records
from pipeline import versions
from pipeline.configs import PipelineConfig
from serving import rollback, rollout_control

MAX_RESUMES = 2
INTERRUPTED_AGAIN = "interrupted again before it was carried through"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _step(config: PipelineConfig, intent: journal.Intent, decision: Decision, step: str, kill: bool = True) -> None:
    intent.decision = asdict(decision)
    journal.write(config, intent, step, kill)


def carry_out(config: PipelineConfig, launch: Launch, decision: Decision) -> None:
    """Journal the fired `decision`, act on it, record it."""
    intent = journal.Intent(id=decision.id, step="", decision={}, pid=os.getpid(), updated=0.0)
    _step(config, intent, decision, journal.DECIDED)
    _proceed(config, launch, decision, intent)


def _proceed(config: PipelineConfig, launch: Launch, decision: Decision, intent: journal.Intent, note: dict | None = None) -> None:
    """Carry `decision` on from `intent.step` to its record. A resumption's `note` says what was
    done, journaled with the next step (so a resumption killed in turn still says how far it got)."""

    def did(what: str) -> None:
        if note is not None:
            note["how"] = what

    if decision.triggers[0] == "rollout":
        did("the rollout decision was done before the kill; recorded it")
        if intent.step == journal.DECIDED:
            did(_decide_rollout(config, decision))
            journal.kill_point("rollout_returned")
            _step(config, intent, decision, journal.ROLLOUT_DECIDED)
    elif decision.triggers[0] == "guard":
        did("the rollback was done before the kill; recorded it")
        if intent.step == journal.DECIDED:
            did(_resume_rollback(config, decision) if intent.resumes else _roll_back(config, decision))
            journal.kill_point("rollback_returned")
            _step(config, intent, decision, journal.ROLLED_BACK)
    else:
        did(f"the run of span {_span(decision)} had ended ({decision.outcome}) before the kill; recorded it")
        if intent.step == journal.DECIDED and decision.span is None:
            did(_feedback_span(config, decision, intent.id) + "; launched it")
            journal.kill_point("feedback_written")
            _step(config, intent, decision, journal.FEEDBACK_BUILT)
        elif intent.step == journal.DECIDED:
            did(f"launched span {_span(decision)}")
        elif intent.step == journal.FEEDBACK_BUILT:
            did(f"launched feedback span {decision.span}, built by the interrupted tick")
        elif intent.step == journal.LAUNCHED and intent.submitted and "run" in intent.submitted:
            did(f"followed the job the interrupted tick had submitted ({intent.submitted['run']['run_name']})")
        elif intent.step == journal.LAUNCHED and intent.submitted:
            did("asked the orchestrator for the job the interrupted tick was sending, by its name: followed it if sent, else sent it")
        elif intent.step == journal.LAUNCHED:
            did(f"launched span {_span(decision)} again (what the interrupted run finished is cached)")
        if intent.step != journal.RAN:
            _step(config, intent, decision, journal.LAUNCHED)
            _launch(config, launch, decision)
            journal.kill_point("run_returned")
            _step(config, intent, decision, journal.RAN)
    _finish(config, decision, intent)


def _finish(config: PipelineConfig, decision: Decision, intent: journal.Intent) -> None:
    decisions.record(config, decision)
    journal.kill_point("recorded")
    _step(config, intent, decision, journal.DONE, kill=False)


def _span(decision: Decision) -> str:
    return label(decision.span, decision.span_source) if decision.span is not None else "-"


def resume(config: PipelineConfig, launch: Launch, now: float, asked: str | None = None) -> Decision | None:
    """Carry through the decision an interrupted tick left (None: there is none to carry through)."""
    intent = journal.unfinished(config)
    if intent is None:
        return None
    logged = decisions.recorded(config, intent.id)
    if logged is not None:  # killed after recording it: only ML Metadata may lack it
        if not ct_records.has_decision(config, intent.id):
            decisions.record_in_metadata(config, logged)
        journal.write(config, intent, journal.DONE, kill=False)
        return None
    decision = decisions.from_json(intent.decision)
    if asked:
        decision.alerts.append(f"on demand ({asked}) not acted on: this tick carried through an interrupted decision; ask again")
    note = {"time": now, "pid": os.getpid(), "interrupted_pid": intent.pid, "step": intent.step, "how": INTERRUPTED_AGAIN}
    if len(intent.resumes) >= MAX_RESUMES:
        note["how"] = _give_up(config, decision, intent)
        decision.resumed = [*intent.resumes, note]
        _finish(config, decision, intent)
        return decision
    intent.resumes.append(note)
    decision.resumed = intent.resumes
    _step(config, intent, decision, intent.step, kill=False)  # the attempt is counted before anything is done
    _proceed(config, launch, decision, intent, note)
    return decision


def _give_up(config: PipelineConfig, decision: Decision, intent: journal.Intent) -> str:
    """Record `decision` as not carried through after MAX_RESUMES interruptions; returns why."""
    why = f"interrupted {len(intent.resumes) + 1} times (last at {intent.step}): not carried through again"
    acts = decision.triggers[0] in ("guard", "rollout")  # acts on serving, launches nothing
    built = feedback.built_for(config, intent.id) if decision.span is None and not acts else None
    if built is not None:
        decision.span, decision.feedback = built["span"], built
    if not acts and decision.span is not None:
        decision.outcome, decision.detail = CRASHED, f"the tick was {why}; recorded as a crash (the retry rule follows)"
        return "recorded as a crash"
    decision.fired, decision.outcome = False, None
    what = {"guard": "the guard's rollback", "rollout": "the rollout decision"}.get(decision.triggers[0], "building the feedback span")
    decision.alerts.append(f"{what} was {why}; the evidence is judged again next tick")
    return f"{what} given up"


def _feedback_span(config: PipelineConfig, decision: Decision, decision_id: str) -> str:
    """Give `decision` its feedback span: the one it built before a kill, or a new one."""
    found = feedback.built_for(config, decision_id)
    if found is None:
        built_by = {"triggers": decision.triggers, "time": _utc(decision.time).isoformat(), "reason": decision.reason,
                    "decision": decision_id}
        found = feedback.build(config, feedback.pending(config, _utc(decision.time)), built_by)
        done = f"built feedback span {found['span']}"
    else:
        done = f"found feedback span {found['span']}, built by the interrupted tick"
    decision.span, decision.feedback = found["span"], found
    decision.reason += f"; served traffic becomes {feedback.describe(found)}"
    return done


def _roll_back(config: PipelineConfig, decision: Decision) -> str:
    found = decision.signals["guard"]
    why = f"CT guard: {guard.describe(found)}"
    try:
        result = rollback.rollback(config, to=found["replaced"], reason=why)
    except (LookupError, ValueError, FileNotFoundError) as exc:
        decision.fired, decision.outcome = False, None
        decision.alerts.append(f"guard could not roll back to {found['replaced']}: {exc}")
        decision.detail = str(exc)
        return f"could not roll back: {exc}"
    _rolled_back(decision, result.from_version, result.to_version, why, result.execution_id)
    return f"rolled back {result.from_version} -> {result.to_version}"


def _rolled_back(decision: Decision, source: str | None, target: str, why: str, execution_id: int | None) -> None:
    decision.outcome = ROLLED_BACK
    decision.rollback = {"from": source, "to": target, "reason": why, "execution_id": execution_id}
    decision.detail = f"rolled back {source} -> {target} (MLMD execution {execution_id})"
    decision.alerts.append(decision.detail)


def _resume_rollback(config: PipelineConfig, decision: Decision) -> str:
    """The guard's rollback after a kill: it took effect, or the judged version still serves, or neither."""
    found = decision.signals["guard"]
    state = versions.serving_state(config.serving_root_uri)
    if state.version == found["replaced"] and state.rollback_in_force and state.rollback.execution_id is not None:
        rollback.settle(config)  # the interrupted rollback's record says COMPLETE, as its pointer does
        _rolled_back(decision, found["version"], found["replaced"], f"CT guard: {guard.describe(found)}", state.rollback.execution_id)
        return "the rollback had taken effect before the kill; recorded it"
    if state.version == found["version"]:
        return _roll_back(config, decision)
    decision.fired, decision.outcome = False, None
    why = f"version {state.version} serves now, not {found['version']}, which the guard judged"
    decision.alerts.append(f"guard did not roll back to {found['replaced']}: {why}")
    decision.detail = why
    return f"not rolled back: {why}"


def _decide_rollout(config: PipelineConfig, decision: Decision) -> str:
    """Promote or abort the rollout the rollout guard judged; idempotent, so a resumed tick does it again."""
    found = decision.signals["rollout"]
    outcome = PROMOTED if found["state"] == rollout_guard.PROMOTE else ABORTED
    try:
        done = rollout_control.decide(config, outcome, f"CT: {rollout_guard.describe(found)}")
    except (LookupError, ValueError) as exc:
        decision.fired, decision.outcome = False, None
        decision.alerts.append(f"rollout guard could not {found['state']} the rollout of {found['candidate']}: {exc}")
        decision.detail = str(exc)
        return f"could not decide the rollout: {exc}"
    decision.outcome = outcome
    decision.detail = f"{rollout_control.describe(done.rollout)} (MLMD execution {done.rollout.execution_id})"
    if outcome == ABORTED:
        decision.alerts.append(decision.detail)
    return f"{outcome} the rollout of {found['candidate']}"


def _launch(config: PipelineConfig, launch: Launch, decision: Decision) -> None:
    """Run `decision.span` of `decision.span_source` and record the outcome on the decision."""
    run_config = config.replace(span=decision.span, span_source=decision.span_source, tune=decision.tune or None,
                                rollout=config.ct_rollout)  # CT's pushes take traffic under its own policy
    outcome = launch(run_config, "+".join(decision.triggers))
    decision.run_id = outcome.run_id
    if outcome.ok:
        decision.outcome = OK
        decision.pushed_version = Path(outcome.pushed_path).name if outcome.pushed_path else None
        decision.detail = f"blessed: {outcome.blessed}; pushed: {outcome.pushed_path or 'nothing'}"
        if decision.resumed and decision.pushed_version and int(decision.pushed_version) >= int(decision.time):  # pushed since it decided
            pushed_by = ct_records.run_that_pushed(config, str(outcome.pushed_path))  # the run whose Pusher this re-run cached
            decision.pushed_by_run = pushed_by if pushed_by != outcome.run_id else None
            decision.detail += f" (by run {pushed_by}, which the interrupted tick started)" if decision.pushed_by_run else ""
        if not outcome.pushed_path and outcome.refusals:
            decision.detail += "; why: " + "; ".join(outcome.refusals)
        if all(status in ("cached", "resolved") for _, status, _ in outcome.timings):
            decision.detail += "; fully cached: " + ("the interrupted tick's run had done it" if decision.resumed else "nothing changed since the last run")
        if outcome.drift and outcome.drift["exceeded"]:
            decision.detail += f"; drift over threshold (policy warn): {', '.join(outcome.drift['exceeded'])}"
    else:
        blocked = (outcome.error or "").startswith("DataValidationError")
        decision.outcome = BLOCKED if blocked else CRASHED
        decision.detail = outcome.error

