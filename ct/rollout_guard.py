"""The rollout guard: judge a running rollout's candidate against stable on the same live traffic.

Evidence is the request log since the rollout started (pipeline/rollouts.py; serving/request_log.py
says what a rollout adds to a record) and the labels that arrived for it:
  shadow    every request stable answered was also answered by the candidate: once labels arrive,
            the pairs are compared as the post-push guard compares (ct/guard.py: one-sided exact
            McNemar, b = stable right and candidate wrong, c = the reverse, p = P(X >= b));
  canary    two groups of requests, split by a hash of the request id: the candidate's accuracy
            against stable's (one-sided two-proportion z-test, H1: the candidate is less accurate).
Besides accuracy, no labels needed: the candidate's error rate (its failed shadow calls, or the
canary requests stable answered because it failed) and its model call's median time against
stable's, once it has been asked guard_min_labels times.
Verdicts: ABORT when the candidate errs on more than rollout_max_error_rate of its requests, its
median model call takes over rollout_max_latency_ratio x stable's, or it is less accurate with
p < guard_alpha, judged once guard_min_labels of its answers (and, for a canary, of stable's) are
labelled (one look at accuracy, as the post-push guard takes); PROMOTE then if none of those holds;
else WAIT, saying for what. The same log and labels give the same verdict.
"""
from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone
from typing import Any

from ct.guard import mcnemar_p
from models.features import CLASS_KEY
from monitoring import labels as labels_lib
from monitoring import live
from pipeline import rollouts
from pipeline.configs import PipelineConfig
from serving import request_log

WAIT, PROMOTE, ABORT = "wait", "promote", "abort"


def two_proportion_p(right_stable: int, n_stable: int, right_candidate: int, n_candidate: int) -> float:
    """One-sided p-value that the candidate's accuracy is below stable's (pooled two-proportion z-test)."""
    if not n_stable or not n_candidate:
        return 1.0
    pooled = (right_stable + right_candidate) / (n_stable + n_candidate)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_stable + 1 / n_candidate))
    if spread == 0:
        return 1.0
    z = (right_stable / n_stable - right_candidate / n_candidate) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))  # P(Z >= z)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def check(config: PipelineConfig, rollout: rollouts.Rollout, now: float, labels: labels_lib.Labels | None = None) -> dict[str, Any]:
    """The verdict on running `rollout` from the request log and labels up to `now`, with its evidence."""
    labels = labels if labels is not None else labels_lib.read(config.labels_root)
    window = request_log.read(config.request_log_root, datetime.fromtimestamp(rollout.started, timezone.utc),
                              datetime.fromtimestamp(now, timezone.utc))
    found = _shadow(window.records, rollout, labels) if rollout.mode == rollouts.SHADOW else _canary(window.records, rollout, labels)
    found.update(stable=rollout.stable, candidate=rollout.candidate, policy=str(rollouts.Policy(rollout.mode, rollout.percent)),
                 needed=config.guard_min_labels, alpha=config.guard_alpha)
    verdict, why = _verdict(config, found)
    return {**found, "state": verdict, "why": why}


def _shadow(records: list[dict], rollout: rollouts.Rollout, labels: labels_lib.Labels) -> dict[str, Any]:
    shadowed = [r for r in records if r.get("shadow_version") == rollout.candidate and r.get("model_version") == rollout.stable]
    answered = [r for r in shadowed if "shadow_output" in r]
    pairs = live.labelled(answered, labels)
    stable_right = [live.correct(r, t) for r, t in pairs]
    candidate_right = [int(r["shadow_output"][CLASS_KEY]) == live.truth(r, t) for r, t in pairs]
    b = sum(s and not c for s, c in zip(stable_right, candidate_right))
    c = sum(c and not s for s, c in zip(stable_right, candidate_right))
    return {
        "asked": len(shadowed), "errors": len(shadowed) - len(answered),
        "labelled": len(pairs), "labelled_stable": len(pairs),
        "candidate_accuracy": sum(candidate_right) / len(pairs) if pairs else None,
        "stable_accuracy": sum(stable_right) / len(pairs) if pairs else None,
        "stable_right_candidate_wrong": b, "candidate_right_stable_wrong": c,
        "p_value": mcnemar_p(b, c), "test": "McNemar one-sided",
        "candidate_ms": _median([r["shadow_ms"] for r in answered if "shadow_ms" in r]),
        "stable_ms": _median([r["model_ms"] for r in answered if "model_ms" in r]),
    }


def _canary(records: list[dict], rollout: rollouts.Rollout, labels: labels_lib.Labels) -> dict[str, Any]:
    canary = [r for r in records if r.get("label") == rollouts.CANARY and r.get("model_version") == rollout.candidate]
    stable = [r for r in records if r.get("label") == rollouts.STABLE and r.get("model_version") == rollout.stable]
    failed = [r for r in stable if "canary_error" in r]
    stable = [r for r in stable if "canary_error" not in r]
    canary_pairs, stable_pairs = live.labelled(canary, labels), live.labelled(stable, labels)
    canary_right = sum(live.correct(r, t) for r, t in canary_pairs)
    stable_right = sum(live.correct(r, t) for r, t in stable_pairs)
    return {
        "asked": len(canary) + len(failed), "errors": len(failed),
        "share": len(canary) / (len(canary) + len(stable)) if canary or stable else None,
        "labelled": len(canary_pairs), "labelled_stable": len(stable_pairs),
        "candidate_accuracy": canary_right / len(canary_pairs) if canary_pairs else None,
        "stable_accuracy": stable_right / len(stable_pairs) if stable_pairs else None,
        "p_value": two_proportion_p(stable_right, len(stable_pairs), canary_right, len(canary_pairs)),
        "test": "two-proportion z one-sided",
        "candidate_ms": _median([r["model_ms"] for r in canary if "model_ms" in r]),
        "stable_ms": _median([r["model_ms"] for r in stable if "model_ms" in r]),
    }


def _verdict(config: PipelineConfig, found: dict[str, Any]) -> tuple[str, str]:
    needed, asked = config.guard_min_labels, found["asked"]
    if asked >= needed:
        rate = found["errors"] / asked
        if rate > config.rollout_max_error_rate:
            return ABORT, f"the candidate failed on {found['errors']} of {asked} requests ({rate:.1%} > {config.rollout_max_error_rate:.1%})"
        mine, theirs = found["candidate_ms"], found["stable_ms"]
        if mine is not None and theirs and mine > config.rollout_max_latency_ratio * theirs:
            return ABORT, (f"the candidate's median model call takes {mine:.2f} ms, over {config.rollout_max_latency_ratio:g}x "
                           f"stable's {theirs:.2f} ms")
    missing = []
    if found["labelled"] < needed:
        missing.append(f"{found['labelled']} of {needed} labelled candidate answers")
    if found["labelled_stable"] < needed:
        missing.append(f"{found['labelled_stable']} of {needed} labelled stable answers")
    if missing:
        return WAIT, "waiting for " + " and ".join(missing) + f" ({asked} requests to the candidate so far)"
    if found["p_value"] < config.guard_alpha:
        return ABORT, f"the candidate is less accurate: {_accuracy(found)}"
    return PROMOTE, f"no worse: {_accuracy(found)}; errors {found['errors']} of {asked}"


def _accuracy(found: dict[str, Any]) -> str:
    return (f"accuracy {found['candidate_accuracy']:.3f} vs stable's {found['stable_accuracy']:.3f} "
            f"on {found['labelled']} and {found['labelled_stable']} labelled answers ({found['test']} p = {found['p_value']:.2g}, "
            f"alpha {found['alpha']})")


def describe(found: dict[str, Any]) -> str:
    """One line: the rollout and the guard's verdict with its reason."""
    what = {WAIT: "waits", PROMOTE: "PROMOTE", ABORT: "ABORT"}[found["state"]]
    return f"rollout of {found['candidate']} ({found['policy']}, stable {found['stable']}): {what}: {found['why']}"
