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
