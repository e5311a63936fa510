"""The post-push guard: put the previous version back when a new one does worse on live traffic.

For the serving version V and the version P it replaced (the one serving when the run that pushed
V was launched; for a push outside CT, the newest version older than V): once V has answered at
least `guard_min_labels` labelled predictions since it went live, P re-scores exactly those
instances (loaded from the serving root with the serving runtime), so the two are compared on the
same examples. Test: one-sided exact McNemar. b = P right and V wrong, c = P wrong and V right;
under "V is no worse" b ~ Binomial(b + c, 1/2), p = P(X >= b). V is rolled back to P when
p < `guard_alpha`; otherwise V stays. Each version gets one verdict (no repeated testing); a version
serving because of a rollback is not judged again.
"""
from __future__ import annotations

import math
import os
from typing import Any

from ct.decisions import Decision
from models.features import CLASS_KEY
from models.instances import Instance, to_example
from models.saved_model import LoadedModel
from monitoring import live
from pipeline import versions
from pipeline.configs import PipelineConfig
from serving import request_log

WAITING, KEPT, WORSE, NOT_GUARDED = "waiting", "kept", "worse", "not_guarded"
BATCH = 256


def replaced_version(config: PipelineConfig, version: str, history: list[Decision]) -> str | None:
    """The version `version` replaced: what served when the run that pushed it was launched."""
    for decision in reversed(history):
        if decision.pushed_version == version:
            return decision.serving_before
    older = [v for v in versions.ready_versions(config.serving_root_uri) if int(v) < int(version)]
    return older[-1] if older else None


def judged(history: list[Decision], version: str) -> dict[str, Any] | None:
    """The guard's earlier verdict on `version`, if it gave one."""
    for decision in reversed(history):
        guard = decision.signals.get("guard") or {}
        if guard.get("version") == version and guard.get("state") in (KEPT, WORSE):
            return guard
    return None


def mcnemar_p(b: int, c: int) -> float:
    """One-sided exact McNemar p-value: P(X >= b), X ~ Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2**n


def _rescore(config: PipelineConfig, version: str, records: list[request_log.Record]) -> list[int]:
    """The class `version` predicts for each record's features."""
    model = LoadedModel.load(os.path.join(config.serving_root_uri, version), version)
    predicted: list[int] = []
    for i in range(0, len(records), BATCH):
        batch = [Instance(to_example(r["features"]), r["features"]) for r in records[i : i + BATCH]]
        predicted += [out[CLASS_KEY] for out in model.predict(batch)]
    return predicted


def check(
    config: PipelineConfig, version: str | None, pairs: list[tuple[request_log.Record, dict]], history: list[Decision]
) -> dict[str, Any]:
    """The guard's view of serving `version`, given its labelled predictions since it went live."""
    if version is None:
        return {"state": NOT_GUARDED, "why": "nothing is serving"}
    rollback = versions.read_rollback(config.serving_root_uri)
    if rollback is not None and rollback.version == version and rollback.in_force(versions.ready_versions(config.serving_root_uri)):
        return {"state": NOT_GUARDED, "version": version, "why": f"serving because of a rollback to {version}"}
    earlier = judged(history, version)
    if earlier is not None:
        return {**earlier, "already_judged": True}
    replaced = replaced_version(config, version, history)
    if replaced is None or replaced not in versions.ready_versions(config.serving_root_uri):
        return {"state": NOT_GUARDED, "version": version, "why": "no earlier version on disk to compare with"}
    base = {"version": version, "replaced": replaced, "labelled": len(pairs), "needed": config.guard_min_labels,
            "alpha": config.guard_alpha}
    if len(pairs) < config.guard_min_labels:
        return {**base, "state": WAITING}
    old_classes = _rescore(config, replaced, [r for r, _ in pairs])
    new_right = [live.correct(r, t) for r, t in pairs]
    old_right = [c == live.truth(r, t) for c, (r, t) in zip(old_classes, pairs)]
    b = sum(o and not n for o, n in zip(old_right, new_right))
    c = sum(n and not o for o, n in zip(old_right, new_right))
    p = mcnemar_p(b, c)
    return {
        **base,
        "state": WORSE if p < config.guard_alpha else KEPT,
        "new_accuracy": sum(new_right) / len(pairs),
        "old_accuracy": sum(old_right) / len(pairs),
        "old_right_new_wrong": b,
        "new_right_old_wrong": c,
        "p_value": p,
    }


def describe(guard: dict[str, Any]) -> str:
    if guard["state"] == NOT_GUARDED:
        return f"guard: not applicable ({guard['why']})"
    if guard["state"] == WAITING:
        return f"guard: version {guard['version']} vs {guard['replaced']}: {guard['labelled']} of {guard['needed']} labelled predictions"
    verdict = "WORSE: roll back" if guard["state"] == WORSE else "kept"
    judged_before = " (judged earlier)" if guard.get("already_judged") else ""
    return (
        f"guard: version {guard['version']} {verdict}{judged_before}: accuracy {guard['new_accuracy']:.3f} vs "
        f"{guard['old_accuracy']:.3f} for {guard['replaced']} on the same {guard['labelled']} labelled predictions "
        f"(McNemar one-sided p = {guard['p_value']:.2g}, alpha {guard['alpha']})"
    )
