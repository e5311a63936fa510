"""The continuous-training controller: decide, launch, record.

Triggers, in priority order: retry (a crashed run, once), on_demand, new_data, performance,
drift, schedule. One tick launches at most one run:
  - retry          the crashed span again (a second crash quarantines it: reported, not retried)
  - new_data       the oldest pending span
  - performance / drift with labelled feedback: the feedback becomes the next span
  - otherwise      the newest span again (cached if nothing changed; the decision says so)
The home's writer lock (pipeline/home_lock.py) makes concurrent ticks and runs safe: a tick that
finds another writer records "busy", naming it. Runs start through a Launch the front door passes.
"""
from __future__ import annotations

import time

from ct import decisions, feedback, signals
from ct.decisions import BLOCKED, BUSY, CRASHED, OK, Decision
from ct.launcher import Launch
from data import spans_io
from metadata import spans
from pipeline import home_lock
from pipeline.configs import PipelineConfig

MAX_ATTEMPTS = 2


def _quarantined(history: list[Decision]) -> set[int]:
    """Spans whose last two launches both crashed."""
    crashes: dict[int, int] = {}
    for d in history:
        if d.fired and d.span is not None and d.outcome in (OK, BLOCKED, CRASHED):
            crashes[d.span] = crashes.get(d.span, 0) + 1 if d.outcome == CRASHED else 0
    return {span for span, count in crashes.items() if count >= MAX_ATTEMPTS}


def _retry(history: list[Decision]) -> Decision | None:
    launched = [d for d in history if d.fired and d.outcome in (OK, BLOCKED, CRASHED)]
    if launched and launched[-1].outcome == CRASHED and launched[-1].attempt < MAX_ATTEMPTS:
        return launched[-1]
    return None


def evaluate(config: PipelineConfig, now: float, reason: str | None = None) -> Decision:
    """What this tick would do, without launching anything."""
    history = decisions.history(config)
    quarantined = _quarantined(history)
    found = {
        "schedule": signals.schedule(config, now, history),
        "new_data": signals.new_data(config, quarantined),
        "performance": signals.performance(config),
        "drift": signals.drift(config),
    }
    if reason:
        found["on_demand"] = {"reason": reason}
    crashed = _retry(history)
    fired = []
    if crashed:
        fired.append("retry")
    if reason:
        fired.append("on_demand")
    if found["new_data"]["pending_spans"]:
        fired.append("new_data")
    if found["performance"]["low"]:
        fired.append("performance")
    drift_acted = _acted_on(history, found["drift"])
    found["drift"]["already_acted_on"] = drift_acted
    if found["drift"]["exceeded"] and not drift_acted:
        fired.append("drift")
    if found["schedule"]["due"]:
        fired.append("schedule")
    decision = Decision(time=now, fired=bool(fired), triggers=fired, reason="", signals=found)
    if crashed:
        decision.span, decision.attempt = crashed.span, crashed.attempt + 1
        decision.reason = f"retry of span {crashed.span} after a crash (attempt {decision.attempt} of {MAX_ATTEMPTS})"
    elif found["new_data"]["pending_spans"]:
        decision.span, decision.attempt = found["new_data"]["pending_spans"][0], 1
        decision.reason = f"new span {decision.span}"
    elif fired:
        decision.attempt = 1
        decision.reason = ", ".join(_why(t, found) for t in fired)
    else:
        decision.reason = _nothing(found)
    return decision


def _acted_on(history: list[Decision], drift: dict) -> bool:
    """True if the same feedback files already fired a drift retrain (no loop on one batch)."""
    acted = [d for d in history if "drift" in d.triggers]
    return bool(acted) and acted[-1].signals["drift"].get("feedback_files") == drift.get("feedback_files")


def _why(trigger: str, found: dict) -> str:
    if trigger == "on_demand":
        return f"on demand: {found['on_demand']['reason']}"
    if trigger == "performance":
        p = found["performance"]
        return f"live accuracy {p['live_accuracy']:.3f} on {p['labelled_rows']} labelled rows (floor {p['floor']}, offline {p['offline_accuracy']})"
    if trigger == "drift":
        return f"feedback drifted on {', '.join(found['drift']['exceeded'])}"
    return f"schedule: no run for {found['schedule']['every_hours']} h"


def _nothing(found: dict) -> str:
    parts = ["no new span"]
    if found["new_data"]["quarantined_spans"]:
        parts.append(f"span(s) {found['new_data']['quarantined_spans']} crashed twice: needs attention")
    p = found["performance"]
    parts.append(
        f"live accuracy {p['live_accuracy']:.3f} ok" if p["live_accuracy"] is not None and p["labelled_rows"] >= p["min_rows"]
        else f"{p['labelled_rows']} labelled rows (< {p['min_rows']})"
    )
    d = found["drift"]
    parts.append(
        f"drift not checked ({d['why']})" if not d["checked"]
        else "feedback drift already acted on" if d["already_acted_on"] and d["exceeded"] else "no drift"
    )
    parts.append("schedule not due")
    return "; ".join(parts)


def _span_for(config: PipelineConfig, decision: Decision) -> int:
    """The span to launch; labelled feedback becomes a new span for performance/drift triggers."""
    if decision.span is not None:
        return decision.span
    if {"performance", "drift"} & set(decision.triggers):
        files = feedback.incoming(config)
        if feedback.labelled_rows(files):
            span = max(spans_io.existing_spans(config.spans_root), default=0) + 1
            feedback.fold_into_span(config, files, span)
            decision.reason += f"; labelled feedback folded into span {span}"
            return span
        decision.reason += "; no labelled feedback to learn from, re-running the newest span"
    return spans.newest(config)


def tick(config: PipelineConfig, launch: Launch, now: float | None = None, reason: str | None = None) -> Decision:
    """Evaluate the triggers, launch at most one run (through `launch`), record the decision."""
    now = time.time() if now is None else now
    try:
        with home_lock.hold(config.home, "conveyor ct tick"):
            decision = evaluate(config, now, reason)
            if decision.fired:
                decision.span = _span_for(config, decision)
                _launch(config, launch, decision)
            decisions.record(config, decision)
            return decision
    except home_lock.HomeBusy as busy:
        decision = Decision(time=now, fired=False, triggers=[], reason=f"skipped: {busy}", outcome=BUSY)
        decisions.record(config, decision)
        return decision


def _launch(config: PipelineConfig, launch: Launch, decision: Decision) -> None:
    """Run `decision.span` and record the outcome on the decision."""
    outcome = launch(config.replace(span=decision.span), "+".join(decision.triggers))
    decision.run_id = outcome.run_id
    decision.span = outcome.span if outcome.span is not None else decision.span
    if outcome.ok:
        decision.outcome = OK
        decision.detail = f"blessed: {outcome.blessed}; pushed: {outcome.pushed_path or 'nothing'}"
        if not outcome.pushed_path and outcome.refusals:
            decision.detail += "; why: " + "; ".join(outcome.refusals)
        if all(status in ("cached", "resolved") for _, status, _ in outcome.timings):
            decision.detail += "; fully cached: nothing changed since the last run"
        if outcome.drift and outcome.drift["exceeded"]:
            decision.detail += f"; drift over threshold (policy warn): {', '.join(outcome.drift['exceeded'])}"
    else:
        blocked = (outcome.error or "").startswith("DataValidationError")
        decision.outcome = BLOCKED if blocked else CRASHED
        decision.detail = outcome.error


def watch(config: PipelineConfig, launch: Launch, interval_seconds: float, max_ticks: int | None = None) -> None:
    """Tick forever (or max_ticks times), printing each decision."""
    ticks = 0
    while max_ticks is None or ticks < max_ticks:
        print(format_decision(tick(config, launch)), flush=True)
        ticks += 1
        if max_ticks is None or ticks < max_ticks:
            time.sleep(interval_seconds)


def format_decision(d: Decision) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.time))
    head = f"{stamp}  {'FIRED ' + '+'.join(d.triggers) if d.fired else 'no run'}: {d.reason}"
    if d.fired:
        head += f"\n    span {d.span} -> {d.outcome} (run {d.run_id})"
        if d.detail:
            head += f"\n    {d.detail.splitlines()[0]}" + "".join(f"\n    {line}" for line in d.detail.splitlines()[1:])
    return head
