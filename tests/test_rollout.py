"""Rollout policies and the rollout state (pipeline/rollouts.py) and how the serving rule follows them
(pipeline/versions.py): pure functions and small files, no model."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import configs, rollouts, versions
from tests.serving_helpers import publish_fake


def test_policies_parse_and_bad_ones_name_what_is_expected():
    assert rollouts.parse_policy("direct") == rollouts.Policy("direct")
    assert rollouts.parse_policy(" Shadow ") == rollouts.Policy("shadow")
    assert rollouts.parse_policy("canary:20") == rollouts.Policy("canary", 20)
    assert str(rollouts.parse_policy("canary:5")) == "canary:5"
    for bad in ("canary", "canary:0", "canary:100", "canary:2.5", "shadow:10", "blue-green", ""):
        with pytest.raises(ValueError, match="expected direct, shadow or canary:P"):
            rollouts.parse_policy(bad)


def test_settings_validate_both_policies_and_name_the_variable(monkeypatch):
    assert configs.load(rollout="canary:20", ct_rollout="shadow").ct_rollout == "shadow"
    monkeypatch.setenv("CONVEYOR_ROLLOUT", "canary:150")
    with pytest.raises(configs.SettingError, match=r"CONVEYOR_ROLLOUT=canary:150: expected direct, shadow or canary:P"):
        configs.load()


def test_the_canary_split_is_stable_and_within_a_binomial_bound():
    """Which request goes to the candidate depends on its id only; over n ids the share is
    Binomial(n, P): 4 standard deviations either side fail ~1 in 16,000 runs (and the hash is
    deterministic, so this either always passes or never)."""
    rollout = rollouts.Rollout("1", "2", rollouts.CANARY, 20, 0.0)
    n, p = 20_000, 0.20
    chosen = sum(rollout.to_candidate(f"request-{i}") for i in range(n))
    assert abs(chosen - n * p) <= 4 * math.sqrt(n * p * (1 - p)), chosen
    assert [rollout.to_candidate(f"request-{i}") for i in range(50)] == [rollout.to_candidate(f"request-{i}") for i in range(50)]
    assert not rollout.decide(rollouts.PROMOTED, "done").to_candidate("request-1")  # decided: no split
    assert not rollouts.Rollout("1", "2", rollouts.SHADOW, 0, 0.0).to_candidate("request-1")


def _root(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "serving_model"
    for name in names:
        publish_fake(root, name)
    return root


def test_publish_under_shadow_writes_the_state_first_and_stable_keeps_serving(tmp_path):
    root = _root(tmp_path, "100")
    publish_fake(root, "200")  # direct: the newest serves, no state
    assert versions.serving_state(root).version == "200" and rollouts.read(root) is None
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / versions.READY_FILE).write_bytes(b"graph")
    versions.stage(str(model), root, "300")
    versions.publish(root, "300", {}, "canary:25")
    state = versions.serving_state(root)
    assert (state.version, state.rollout.stable, state.rollout.candidate, state.rollout.percent) == ("200", "200", "300", 25)
    assert versions.read_record(root, "300")[versions.ROLLOUT] == "canary:25"
    rollouts.write(root, state.rollout.decide(rollouts.PROMOTED, "better"))
    assert versions.serving_version(root) == "300"
    rollouts.write(root, state.rollout.decide(rollouts.ABORTED, "worse"))
    assert versions.serving_version(root) == "200"


def test_a_newer_push_or_a_later_rollback_supersedes_a_rollout(tmp_path):
    root = _root(tmp_path, "100", "200")
    rollouts.write(root, rollouts.start("100", "200", rollouts.parse_policy("shadow"), now=1000.0))
    assert versions.serving_version(root) == "100"
    rollback = versions.write_rollback(root, "100")  # later than the rollout's start: the operator's word
    assert versions.serving_state(root).rollout is None and versions.serving_version(root) == "100"
    Path(root / versions.POINTER_FILE).write_text(json.dumps({**rollback.__dict__, "time": 10.0}))  # before the rollout
    assert versions.serving_state(root).rollout is not None
    publish_fake(root, "300")
    assert versions.serving_version(root) == "300" and versions.serving_state(root).rollout is None


def test_a_state_naming_an_unpublished_candidate_or_a_gone_stable_is_not_in_force(tmp_path):
    root = _root(tmp_path, "100", "200")
    rollouts.write(root, rollouts.start("100", "999", rollouts.parse_policy("shadow")))  # killed before the rename
    assert versions.serving_version(root) == "200"
    rollouts.write(root, rollouts.start("50", "200", rollouts.parse_policy("shadow")))
    assert versions.serving_version(root) == "200"


def test_an_invalid_state_is_reported_and_ignored(tmp_path):
    root = _root(tmp_path, "100", "200")
    (root / rollouts.STATE_FILE).write_text('{"stable": "100", "candidate": ')
    state = versions.serving_state(root)
    assert state.version == "200" and "is not a valid rollout state" in state.pointer_error and "conveyor rollout abort" in state.pointer_error


@pytest.mark.parametrize("point", ["before_rename", "after_rename"])
def test_a_kill_at_the_rename_leaves_the_old_state_or_the_new_one(tmp_path, point):
    """SIGKILL inside write(), just before and just after the rename: the state read afterwards
    is whole, the old split before the rename, the new one after it."""
    root = _root(tmp_path, "100", "200")
    old = rollouts.start("100", "200", rollouts.parse_policy("canary:20"), now=1000.0)
    rollouts.write(root, old)
    code = (
        "import sys; from pipeline import rollouts; r = rollouts.read(sys.argv[1]);"
        "rollouts.write(sys.argv[1], r.decide(rollouts.PROMOTED, 'killed test', 2000.0))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], env={**os.environ, rollouts.KILL_VARIABLE: point},
                          cwd=Path(__file__).parent.parent, timeout=60)
    assert done.returncode == -signal.SIGKILL
    found = rollouts.read(root)
    assert found == (old if point == "before_rename" else old.decide(rollouts.PROMOTED, "killed test", 2000.0))
    assert versions.serving_version(root) == ("100" if point == "before_rename" else "200")


# --- the rollout guard (ct/rollout_guard.py) on a small written request log and labels ---------------

GUARD = {"guard_min_labels": 50, "guard_alpha": 0.01}


def _served(config, rollout: rollouts.Rollout, answers: list[tuple[int, int | None, str | None]], canary: bool = False,
            model_ms: tuple[float, float] = (1.0, 1.0)) -> None:
    """Log one record per (truth, candidate's class or None, error) and label it: stable answers the
    truth itself (always right); in a shadow rollout the candidate's class rides along, in a canary
    every other request is the candidate's. A fare of 10 and tips of 3 (big tipper) or 0."""
    from datetime import datetime, timezone

    from monitoring import labels as labels_lib
    from serving import request_log

    when = datetime.fromtimestamp(rollout.started + 1, timezone.utc)
    records = []
    for i, (truth, theirs, error) in enumerate(answers):
        to_candidate = canary and i % 2 == 1
        answered = theirs if to_candidate and theirs is not None else truth
        fields: dict = {"label": "canary" if to_candidate and not error else "stable",
                        "model_ms": model_ms[1] if to_candidate else model_ms[0]}
        if not canary:
            fields.update({"shadow_version": rollout.candidate, "shadow_ms": model_ms[1]})
            fields.update({"shadow_error": error} if error else {"shadow_output": {"probability": 0.5, "predicted_class": theirs}})
        elif error:
            fields["canary_error"] = error
        version = rollout.candidate if fields["label"] == "canary" else rollout.stable
        records.append(request_log.record(f"r-{i}", 0, when, "taxi", version, {"fare": 10.0},
                                          {"probability": 0.5, "predicted_class": answered}, (), fields))
    log = request_log.RequestLog(config.request_log_root)
    log.append(records, when)
    log.close()
    labels_lib.write(config.labels_root / "labels.jsonl", [(f"r-{i}", 0, 3.0 if truth else 0.0) for i, (truth, _, _) in enumerate(answers)])


def _judge(tmp_path, policy: str, answers, **kwargs):
    from ct import rollout_guard

    config = configs.load(home=tmp_path / "home", **GUARD)
    rollout = rollouts.start("100", "200", rollouts.parse_policy(policy), now=1_800_000_000.0)
    _served(config, rollout, answers, canary=policy.startswith("canary"), **kwargs)
    return rollout_guard.check(config, rollout, rollout.started + 60)


def test_two_proportions_one_sided():
    from ct.rollout_guard import two_proportion_p

    assert two_proportion_p(50, 100, 50, 100) == pytest.approx(0.5)
    assert two_proportion_p(90, 100, 10, 100) < 1e-20  # the candidate far less accurate
    assert two_proportion_p(10, 100, 90, 100) > 0.999
    assert two_proportion_p(0, 0, 5, 10) == 1.0


def test_a_shadow_wrong_where_stable_is_right_is_aborted_on_paired_answers(tmp_path):
    answers = [(1, 0, None)] * 20 + [(1, 1, None)] * 20 + [(0, 0, None)] * 20
    found = _judge(tmp_path, "shadow", answers)
    assert (found["state"], found["stable_right_candidate_wrong"], found["candidate_right_stable_wrong"]) == ("abort", 20, 0)
    assert found["p_value"] == pytest.approx(0.5**20)
    assert "the candidate is less accurate: accuracy 0.667 vs stable's 1.000 on 60 and 60 labelled answers (McNemar" in found["why"]


def test_a_rollout_waits_for_labels_and_says_for_what(tmp_path):
    found = _judge(tmp_path, "shadow", [(1, 0, None)] * 10)
    assert found["state"] == "wait"
    assert found["why"] == "waiting for 10 of 50 labelled candidate answers and 10 of 50 labelled stable answers (10 requests to the candidate so far)"


def test_a_canary_no_worse_is_promoted_and_one_that_fails_or_is_slow_is_aborted(tmp_path):
    same = [(i % 2, None, None) for i in range(120)]
    promoted = _judge(tmp_path / "a", "canary:50", same)
    assert promoted["state"] == "promote" and promoted["labelled"] == 60 and promoted["labelled_stable"] == 60
    failing = [(1, None, "PredictionError: boom" if i % 10 == 1 else None) for i in range(120)]
    aborted = _judge(tmp_path / "b", "canary:50", failing)
    assert aborted["state"] == "abort" and aborted["why"].startswith("the candidate failed on 12 of 60 requests (20.0% > 1.0%)")
    slow = _judge(tmp_path / "c", "shadow", [(1, 1, None)] * 60, model_ms=(1.0, 2.5))
    assert slow["state"] == "abort" and "median model call takes 2.50 ms, over 2x stable's 1.00 ms" in slow["why"]


def test_a_bad_rollout_flag_is_one_line_and_creates_nothing(tmp_path):
    from tests.serving_helpers import CONVEYOR

    home = tmp_path / "home"
    done = subprocess.run([str(CONVEYOR), "run", "--home", str(home), "--rollout", "canary:0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "conveyor run: --rollout canary:0: expected direct, shadow or canary:P with P a whole percentage from 1 to 99"
    assert not home.exists()
