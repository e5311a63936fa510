"""The continuous-training controller: decide, act, record.

Each tick evaluates every trigger, in priority order:
  rollout      a shadow or canary rollout runs and its guard has a verdict (ct/rollout_guard.py):
               promote the candidate or abort it
  guard        the serving version does significantly worse on live traffic than the version it
               replaced (ct/guard.py): roll back to that one
  retry        the last launch crashed: once more (a second crash quarantines the span)
  on_demand    `conveyor ct run --reason TEXT`
  new_data     an upstream span newer than the newest ingested one (or a feedback span a tick built
               and did not get to launch)
  performance  the serving version's live accuracy is low (monitoring/live.py) on enough labels
  estimated_performance  before enough labels, its CBPE-estimated accuracy is low by the same rules
               (monitoring/estimate.py; ct_estimated_performance: off, warn = an alert, trigger)
  drift        the serving version's served features are skewed against its training statistics
  schedule     no launch for ct_schedule_hours
and takes at most one action: the rollout's promotion or abort, the rollback, or one run of the crashed span, of the oldest pending
span, for performance or drift of a new feedback span (the labelled predictions not yet trained on,
ct/feedback.py), otherwise of the newest upstream span (fully cached if nothing changed, and the
decision says so); a run launched for an estimated drop is such a run, and its decision says it
acted on an estimate (`on_estimate`; another action answers the estimate too, and says why it ran).
Drift whose labelled predictions do not show it yet is an alert, not a run (a retrain learns only
from labelled predictions); it acts once the labels arrive. The home's writer lock
(pipeline/home_lock.py) makes concurrent ticks and runs safe: a tick that finds another writer
records "busy", naming it. Runs start through a Launch the front door passes (ct/launcher.py).
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Callable

from ct import actions, decisions, feedback, guard, retune, rollout_guard, signals
from ct.decisions import BUSY, CRASHED, Decision
from ct.launcher import Launch
from data.spans_io import FEEDBACK, label
from metadata import spans
from monitoring import labels as labels_lib
from monitoring import live
from pipeline import home_lock, versions
from pipeline.configs import PipelineConfig
from serving import request_log

MAX_ATTEMPTS = 2
TRIGGERS = ("rollout", "guard", "retry", "on_demand", "new_data", "performance", "estimated_performance", "drift", "schedule")


def _quarantined(history: list[Decision]) -> set[tuple[str, int]]:
    """(namespace, span) of spans whose last two launches both crashed."""
    crashes: dict[tuple[str, int], int] = {}
    for d in history:
        if d.launched and d.span is not None:
            key = (d.span_source, d.span)
            crashes[key] = crashes.get(key, 0) + 1 if d.outcome == CRASHED else 0
    return {key for key, count in crashes.items() if count >= MAX_ATTEMPTS}


def _retry(history: list[Decision]) -> Decision | None:
    launched = [d for d in history if d.launched]
    if launched and launched[-1].outcome == CRASHED and launched[-1].attempt < MAX_ATTEMPTS:
        return launched[-1]
    return None


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _guard_pairs(config: PipelineConfig, found_evidence: dict | None, now: float, labels: labels_lib.Labels):
    """The serving version's labelled predictions since it went live (what the guard judges it on)."""
    if found_evidence is None:
        return []
    version = found_evidence["version"]
    window = request_log.read(config.request_log_root, datetime.fromisoformat(found_evidence["live_since"]), _utc(now))
    return live.labelled([r for r in window.records if r["model_version"] == version], labels)


def evaluate(config: PipelineConfig, now: float, reason: str | None = None) -> Decision:
    """What this tick would do, without acting."""
    history = decisions.history(config)
    labels = labels_lib.read(config.labels_root)
    found_evidence = signals.serving_evidence(config, now, labels)
    serving = found_evidence["version"] if found_evidence else None
    pending = feedback.pending(config, _utc(now), labels)
    found = {
        "serving": {k: found_evidence[k] for k in ("version", "live_since", "since", "until")} if found_evidence else {"version": None},
        "schedule": signals.schedule(config, now, history),
        "new_data": signals.new_data(config, _quarantined(history)),
        "performance": signals.performance(found_evidence),
        "estimated_performance": signals.estimated_performance(config, found_evidence, history),
        "drift": signals.drift(found_evidence, history),
        "guard": guard.check(config, serving, _guard_pairs(config, found_evidence, now, labels), history),
        "feedback": {
            "labelled": len(pending.labelled), "needed": config.live_min_labels,
            "since": pending.start.isoformat(), "until": pending.end.isoformat(),
        },
    }
    rollout = versions.serving_state(config.serving_root_uri).rollout
    if rollout is not None and rollout.running:
        found["rollout"] = rollout_guard.check(config, rollout, now, labels)
    if reason:
        found["on_demand"] = {"reason": reason}
    learnable = bool(found["drift"].get("learnable"))
    crashed = _retry(history)
    new = found["new_data"]
    hits = {
        "rollout": found.get("rollout", {}).get("state") in (rollout_guard.PROMOTE, rollout_guard.ABORT),
        "guard": found["guard"]["state"] == guard.WORSE and not found["guard"].get("already_judged"),
        "retry": crashed is not None,
        "on_demand": bool(reason),
        "new_data": bool(new["pending_spans"] or new["pending_feedback_spans"]),
        "performance": found["performance"]["low"],
        "estimated_performance": found["estimated_performance"]["low"] and config.ct_estimated_performance == "trigger",
        "drift": bool(found["drift"]["exceeded"]) and learnable,
        "schedule": found["schedule"]["due"],
    }
    fired = [t for t in TRIGGERS if hits[t]]
    decision = Decision(time=now, fired=bool(fired), triggers=fired, reason="", signals=found, serving_before=serving)
    decision.alerts = _alerts(found, learnable)
    if not fired:
        decision.reason = _nothing(found)
        return decision
    decision.attempt = 1
    any_run = {"on_demand", "schedule", "estimated_performance"}  # answered by whichever run is launched
    if hits["rollout"]:
        decision.reason, acted = rollout_guard.describe(found["rollout"]), {"rollout"}
    elif hits["guard"]:
        decision.reason, acted = guard.describe(found["guard"]), {"guard"}
    elif crashed:
        decision.span, decision.span_source, decision.attempt = crashed.span, crashed.span_source, crashed.attempt + 1
        decision.reason = f"retry of span {label(crashed.span, crashed.span_source)} after a crash (attempt {decision.attempt} of {MAX_ATTEMPTS})"
        acted = {"retry"} | any_run
    elif hits["new_data"]:
        if new["pending_spans"]:
            decision.span = new["pending_spans"][0]
            decision.reason = f"new span {decision.span}"
        else:
            decision.span, decision.span_source = new["pending_feedback_spans"][0], FEEDBACK
            decision.reason = f"feedback span {decision.span} was built but never launched"
        acted = {"new_data"} | any_run
    elif hits["performance"] or hits["drift"]:
        decision.span_source = FEEDBACK  # the span number is given when the tick builds it
        decision.reason = "; ".join(_why(t, found) for t in fired if t in ("performance", "drift"))
        acted = {"performance", "drift"} | any_run
    else:
        decision.reason = "; ".join(_why(t, found) for t in fired)
        try:
            decision.span = spans.newest(config)
        except LookupError as exc:  # schedule or on demand, and no upstream span to run
            decision.fired, decision.triggers, decision.attempt = False, [], 0
            decision.reason = f"nothing to run: {exc} ({decision.reason})"
            decision.alerts.append(f"{' and '.join(fired)} fired, but there is no span to run: {exc}")
            return decision
        acted = any_run
        decision.on_estimate = hits["estimated_performance"]  # the estimate, not data or labels, launched it
    if hits["on_demand"] and "on_demand" in acted and not decision.reason.startswith("on demand"):
        decision.reason += f"; {_why('on_demand', found)}"
    waiting = [t for t in fired if t not in acted]
    if waiting:
        decision.reason += f" (also fired: {', '.join(waiting)}; judged again next tick)"
    if not (hits["guard"] or hits["rollout"]):
        retune.apply(config, decision, history)
    return decision


def _alerts(found: dict, learnable: bool) -> list[str]:
    alerts = []
    p, d, g = found["performance"], found["drift"], found["guard"]
    if p["low"]:
        alerts.append(f"version {p['version']}: {'; '.join(p['reasons'])}")
    e = found["estimated_performance"]
    if e["low"]:
        alerts.append(f"version {e['version']}, before its labels: {'; '.join(e['reasons'])} ({e['calibration']}, {e['predictions']} predictions; CBPE)")
    if d["exceeded"]:
        alerts.append(
            f"version {d['version']}: served features skewed against its training data: {', '.join(d['exceeded'])}"
            + ("" if learnable else f" (waiting for labels: {d['labelled_reason']})")
        )
    if g["state"] == guard.WORSE:
        alerts.append(guard.describe(g))
    if found["new_data"]["quarantined_spans"]:
        alerts.append(f"span(s) {found['new_data']['quarantined_spans']} crashed twice: needs attention")
    return alerts


def _why(trigger: str, found: dict) -> str:
    if trigger == "on_demand":
        return f"on demand: {found['on_demand']['reason']}"
    if trigger == "performance":
        p = found["performance"]
        return (
            f"performance of version {p['version']}: {'; '.join(p['reasons'])} ({p['labeled']} labelled predictions "
            f"since {p['since']}{'; ' + p['offline_unknown'] if p.get('offline_unknown') else ''})"
        )
    if trigger == "estimated_performance":
        e = found["estimated_performance"]
        return (
            f"estimated performance of version {e['version']} (CBPE, no labels yet): {'; '.join(e['reasons'])} "
            f"({e['predictions']} predictions since {e['since']}, {e['calibration']})"
        )
    if trigger == "drift":
        d = found["drift"]
        return f"drift: version {d['version']}'s traffic since {d['since']} skewed on {', '.join(d['exceeded'])}"
    return f"schedule: no run for {found['schedule']['every_hours']} h"


def _nothing(found: dict) -> str:
    parts = ["no new span"]
    serving = found["serving"]["version"]
    if serving is None:
        return "no new span; nothing is serving yet; schedule not due"
    p, d = found["performance"], found["drift"]
    if p["state"] == live.OK:
        parts.append(f"version {serving}: live accuracy {p['accuracy']:.3f} ok on {p['labeled']} labels"
                     + (f" ({p['offline_unknown']})" if p.get("offline_unknown") else ""))
    elif p["state"] == live.NO_TRAFFIC:
        parts.append(f"version {serving}: no traffic since {found['serving']['since']}")
    else:
        parts.append(f"version {serving}: {p['reasons'][0]}")
    e = found["estimated_performance"]
    if e.get("already_acted_on"):
        parts.append("estimated drop already acted on")
    elif e.get("state") == "trusted":
        parts.append(f"estimated accuracy {e['accuracy']:.3f} " + (f"low: alert only (ct_estimated_performance={e['action']})" if e["low"] else "ok"))
    elif e.get("reasons"):
        parts.append(f"estimate not judged ({e['reasons'][0]})")
    if d["already_acted_on"]:
        parts.append("drift already acted on")
    elif d["exceeded"]:
        parts.append(f"drift on {', '.join(d['exceeded'])}: waiting for labels to learn from ({d['labelled_reason']})")
    elif d["state"] == "scored":
        parts.append("no drift")
    else:
        parts.append(f"drift not judged ({d['reason']})")
    parts.append(guard.describe(found["guard"]))
    if "rollout" in found:
        parts.append(rollout_guard.describe(found["rollout"]))
    parts.append("schedule not due")
    return "; ".join(parts)


def tick(config: PipelineConfig, launch: Launch, now: float | None = None, reason: str | None = None) -> Decision:
    """Carry through a decision an interrupted tick left (ct/actions.py), or else evaluate the
    triggers and take at most one action (a rollback, or a run through `launch`); record the decision."""
    now = time.time() if now is None else now
    try:
        with home_lock.hold(config.home, "conveyor ct tick"):
            resumed = actions.resume(config, launch, now, asked=reason)
            if resumed is not None:
                return resumed
            decision = evaluate(config, now, reason)
            decision.id = new_id(now)
            if decision.fired:
                actions.carry_out(config, launch, decision)
            else:
                decisions.record(config, decision)
            return decision
    except home_lock.HomeBusy as busy:
        decision = Decision(time=now, fired=False, triggers=[], reason=f"skipped: {busy}", outcome=BUSY, id=new_id(now))
        decisions.record(config, decision)
        return decision


def new_id(now: float) -> str:
    """A decision's id: its UTC time and a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ-", time.gmtime(now)) + uuid.uuid4().hex[:8]


def watch(tick_once: Callable[[], Decision], interval_seconds: float, max_ticks: int | None = None) -> None:
    """Tick forever (or max_ticks times), printing each decision. `tick_once` is one tick: this
    module's `tick` on a home, or a cluster tick (conveyor/kubeflow/cluster_ct.py)."""
    ticks = 0
    while max_ticks is None or ticks < max_ticks:
        print(decisions.format_decision(tick_once()), flush=True)
        ticks += 1
        if max_ticks is None or ticks < max_ticks:
            time.sleep(interval_seconds)
