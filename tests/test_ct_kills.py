"""kill -9 of a real `conveyor ct tick` (the installed command) while it carries out a decision, then
ticks left to finish: every fired trigger is carried out exactly once (ct/journal.py, ct/actions.py).

The home: a copy of small_run's (span 1 pushed and serving) with its own spans folder, a real
`conveyor serve` on it, 600 trips of the shifted world (trip_miles x1.5, credit-card riders stop
tipping) sent over HTTP and their labels delivered: the next tick fires performance (and drift),
turns the traffic into feedback span 1 and retrains on it. A tick is killed at a point by
CONVEYOR_CT_KILL_AT (it SIGKILLs itself there), or by the test once the run reaches a point on
disk (Trainer started; Pusher staged the version, Publish next; the version published) or after a
delay. Then the next tick carries the decision through, and every time: one fired decision, saying
how it was resumed; one feedback span holding all 600 labelled trips, named after that decision and
trained on; one new push, recorded in ML Metadata, published and served by the running server;
`conveyor lineage` and `conveyor ct status` agree; a further tick has nothing to do. The guard's
rollback is killed the same way: one rollback, recorded once, and the replaced version serves.

Default suite: one sequence (killed after the feedback span was written, then inside the run as
Trainer starts; then the guard's rollback killed once decided): the fast points. The sweep over every
point and several delays is marked slow (`make test-slow`).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import demo as ct_demo
from ct import decisions, guard, journal
from data import generator, spans_io
from data.spans_io import FEEDBACK
from metadata import registry
from pipeline import configs, versions
from serving import rollback
from tests.serving_helpers import CONVEYOR, Serve, copy_home, wait_for

STEPS = {"CONVEYOR_TRAIN_STEPS": "100", "CONVEYOR_EVAL_STEPS": "5"}
SHIFTED, GUARD_TRIPS = 600, 400


@pytest.fixture(scope="module")
def reference():
    return generator.shipped_reference()


@pytest.fixture(scope="module")
def traffic(small_run, reference, tmp_path_factory):
    """small_run's home after a real server answered SHIFTED shifted trips, their labels delivered."""
    base = tmp_path_factory.mktemp("ct-kills")
    config = copy_home(small_run, base / "home", spans_root=base / "spans")
    shutil.copytree(small_run[0].spans_root, config.spans_root)
    with Serve(config.home) as server:
        sent = ct_demo.send_trips(server.url, config.model_name, ct_demo.shifted_trips(reference, SHIFTED, 31), "shifted")
    ct_demo.deliver_labels(config, "shifted-labels", sent)
    return config


def _copy(config: configs.PipelineConfig, dest: Path) -> configs.PipelineConfig:
    shutil.copytree(config.home, dest / "home", ignore=shutil.ignore_patterns("serve-*.err"))
    shutil.copytree(config.spans_root, dest / "spans")
    return config.replace(home=dest / "home", spans_root=dest / "spans")


@pytest.fixture
def served(traffic, tmp_path):
    """A copy of `traffic`'s home with a running `conveyor serve` on it; (config, server, first version)."""
    config = _copy(traffic, tmp_path)
    with Serve(config.home) as server:
        yield config, server, versions.serving_version(config.serving_root)


class Tick:
    """`conveyor ct tick` as a subprocess, its console lines collected as they come (a run prints a
    line per component as it finishes); `kill_at` names a CONVEYOR_CT_KILL_AT point."""

    def __init__(self, config: configs.PipelineConfig, kill_at: str | None = None):
        env = {**os.environ, **STEPS}
        env.pop(journal.KILL_VARIABLE, None)
        if kill_at:
            env[journal.KILL_VARIABLE] = kill_at
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(CONVEYOR), "ct", "tick", "--home", str(config.home), "--spans-root", str(config.spans_root)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self._reader = threading.Thread(target=lambda: self.lines.extend(line.rstrip("\n") for line in self.process.stdout), daemon=True)
        self._reader.start()

    def output(self) -> str:
        self._reader.join(timeout=60)
        return "\n".join(self.lines)

    def component_finished(self, component: str):
        return lambda: any(line.split()[:1] == [component] for line in list(self.lines))

    def killed_itself(self) -> None:
        code = self.process.wait(timeout=900)
        assert code == -signal.SIGKILL, f"exit {code}:\n{self.output()}"

    def kill_when(self, condition, what: str, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"the tick ended before {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.0005)
        self.process.kill()
        assert self.process.wait(timeout=60) == -signal.SIGKILL

    def kill_after(self, seconds: float) -> bool:
        """SIGKILL after `seconds` unless it ended first (True: it was killed)."""
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=60)
            return True
        return False

    def finished(self, exit_code: int = 0) -> str:
        code = self.process.wait(timeout=1800)
        assert code == exit_code, f"exit {code}:\n{self.output()}"
        return self.output()


def conveyor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args], capture_output=True, text=True, timeout=600, env={**os.environ, **STEPS})


def _step(config: configs.PipelineConfig) -> str | None:
    intent = journal.read(config)
    return intent.step if intent else None


def _served(server: Serve, config: configs.PipelineConfig) -> str:
    """The version the running server answers with (a probe of its own request id)."""
    return ct_demo.send_trips(server.url, config.model_name, [generator.shipped_reference()[0]], f"probe-{uuid.uuid4().hex[:12]}")[0][3]


def _pushed(config: configs.PipelineConfig) -> list[str]:
    """Versions ML Metadata records a push of, oldest first."""
    return [e.version for e in registry.list_versions(config) if e.pushed_model is not None]


@dataclass
class Retrain:
    config: configs.PipelineConfig
    first: str
    new: str
    decision: decisions.Decision


def _retrained_once(config, server, first: str, resumed_at: list[str]) -> Retrain:
    """The checks after a killed retrain was finished by later ticks (module docstring)."""
    fired = [d for d in decisions.history(config) if d.fired]
    assert len(fired) == 1, [decisions.format_decision(d) for d in fired]
    decision = fired[0]
    assert decision.triggers[0] == "performance" and decision.outcome == decisions.OK, decisions.format_decision(decision)
    assert [r["step"] for r in decision.resumed] == resumed_at, decision.resumed
    assert journal.unfinished(config) is None and journal.read(config).id == decision.id
    # The served traffic became one feedback span, named after the decision, holding every labelled trip.
    assert spans_io.existing_spans(config.feedback_spans_root, FEEDBACK) == [1]
    manifest = spans_io.read_manifest(config.feedback_spans_root, 1)
    assert manifest["built_by"]["decision"] == decision.id and manifest["labelled"] == SHIFTED
    assert (decision.span, decision.span_source, decision.feedback["labelled"]) == (1, FEEDBACK, SHIFTED)
    # One push: recorded, published, trained on the feedback span, serving, and the server swapped to it.
    new = decision.pushed_version
    assert new and _pushed(config) == [first, new] == versions.ready_versions(config.serving_root)
    assert versions.incomplete_versions(config.serving_root) == [] and versions.serving_version(config.serving_root) == new
    assert registry.find(config, new).window_feedback_spans == [1]
    wait_for(lambda: _served(server, config) == new, 60, f"the server to serve {new}")
    # lineage and ct status tell the same story.
    lineage = conveyor("lineage", "--home", str(config.home), "--version", new)
    assert lineage.returncode == 0 and "launched by: CT trigger performance" in lineage.stdout, lineage.stdout + lineage.stderr
    assert "feedback spans [1] (served traffic)" in lineage.stdout and f"{SHIFTED} labelled predictions" in lineage.stdout
    models = conveyor("models", "--home", str(config.home))
    assert models.returncode == 0 and f"* {new}" in models.stdout and "1,f1" in models.stdout, models.stdout + models.stderr
    status = conveyor("ct", "status", "--home", str(config.home))
    assert status.returncode == 0 and "unfinished decision: none" in status.stdout, status.stdout + status.stderr
    assert status.stdout.count("RESUMED") == len(resumed_at), status.stdout
    # The evidence was used once: the next tick has nothing to do.
    again = Tick(config).finished()
    assert "no run: no new span" in again and "served traffic becomes" not in again, again
    assert [d.id for d in decisions.history(config) if d.fired] == [decision.id]
    return Retrain(config, first, new, decision)


def _worse_version_served(retrained: Retrain, server, reference) -> str:
    """The first model pushed again as the newest version, answering shifted trips (labels in): the
    guard finds it worse than the retrained version it replaced."""
    config = retrained.config
    worse = versions.republish(config.serving_root, retrained.first, versions.new_version(config.serving_root)).name
    wait_for(lambda: _served(server, config) == worse, 60, f"the server to serve {worse}")
    sent = ct_demo.send_trips(server.url, config.model_name, ct_demo.shifted_trips(reference, GUARD_TRIPS, 32), "worse")
    assert {version for *_, version in sent} == {worse}
    ct_demo.deliver_labels(config, "worse-labels", sent)
    return worse


def _rolled_back_once(retrained: Retrain, server, worse: str, resumed_at: list[str]) -> None:
    config = retrained.config
    guarded = [d for d in decisions.history(config) if d.fired and d.triggers[0] == "guard"]
    assert len(guarded) == 1, [decisions.format_decision(d) for d in guarded]
    decision = guarded[0]
    assert decision.outcome == decisions.ROLLED_BACK and decision.signals["guard"]["state"] == guard.WORSE
    assert [r["step"] for r in decision.resumed] == resumed_at, decision.resumed
    took_effect = rollback.effective(config)
    assert [(r.from_version, r.to_version) for r in map(registry.RecordedRollback.of, took_effect)] == [(worse, retrained.new)]
    assert decision.rollback["execution_id"] == took_effect[0].id
    assert versions.serving_version(config.serving_root) == retrained.new
    wait_for(lambda: _served(server, config) == retrained.new, 60, "the server to swap back")
    status = conveyor("ct", "status", "--home", str(config.home))
    assert f"{worse} -> {retrained.new}: CT guard" in status.stdout and "unfinished decision: none" in status.stdout, status.stdout


def _run_started(config, component: str):
    return lambda: (config.pipeline_root / component).is_dir()


def _staging(config):
    """Pusher has started copying the version into the staging area."""
    staging = config.serving_root / versions.STAGING_DIR
    return lambda: staging.is_dir() and any(staging.iterdir())


def _published(config):
    return lambda: len(versions.ready_versions(config.serving_root)) == 2


@pytest.mark.timeout(2400)
def test_a_retrain_killed_twice_and_a_rollback_killed_once_are_each_carried_out_once(served, reference):
    config, server, first = served
    Tick(config, kill_at="feedback_written").killed_itself()
    assert _step(config) == journal.DECIDED and spans_io.existing_spans(config.feedback_spans_root, FEEDBACK) == [1]
    assert decisions.history(config) == []  # nothing recorded yet: what the issue saw dropped
    Tick(config).kill_when(_run_started(config, "Trainer"), "the run to reach Trainer")  # resumes: the span it found, launched
    assert _step(config) == journal.LAUNCHED and spans_io.existing_spans(config.feedback_spans_root, FEEDBACK) == [1]
    out = Tick(config).finished()  # the case: the killed run ingested the span; nothing else would launch it
    assert "FIRED performance" in out and "was interrupted at launched" in out, out
    retrained = _retrained_once(config, server, first, [journal.DECIDED, journal.LAUNCHED])
    assert "found feedback span 1, built by the interrupted tick" in retrained.decision.resumed[0]["how"]

    worse = _worse_version_served(retrained, server, reference)
    Tick(config, kill_at=journal.DECIDED).killed_itself()
    assert _step(config) == journal.DECIDED and versions.serving_version(config.serving_root) == worse
    out = Tick(config).finished()
    assert "FIRED guard" in out and "RESUMED" in out, out
    _rolled_back_once(retrained, server, worse, [journal.DECIDED])


# --- the full sweep (`make test-slow`) -------------------------------------------------------------

# CONVEYOR_CT_KILL_AT points of a retrain, and the journal steps the finishing tick resumes from
# ([]: the decision was recorded before the kill; the journal is only closed).
RETRAIN_POINTS = {
    journal.DECIDED: [journal.DECIDED],
    "feedback_written": [journal.DECIDED],
    journal.FEEDBACK_BUILT: [journal.FEEDBACK_BUILT],
    journal.LAUNCHED: [journal.LAUNCHED],
    "run_returned": [journal.LAUNCHED],
    journal.RAN: [journal.RAN],
    "recorded": [],
}


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("point", RETRAIN_POINTS)
def test_a_retrain_killed_at_each_point_is_carried_out_once(served, point):
    config, server, first = served
    Tick(config, kill_at=point).killed_itself()
    assert "RESUMED" in Tick(config).finished() or point == "recorded"
    _retrained_once(config, server, first, RETRAIN_POINTS[point])


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("where", ["Transform", "Evaluator", "Pusher staging", "Pusher", "Publish done"])
def test_a_retrain_killed_inside_its_run_is_carried_out_once(served, where):
    """Killed as a component's line is printed (it finished and is recorded: Transform, Evaluator;
    Pusher: the push is recorded, Publish next), in the middle of Pusher's copy (not recorded: the
    re-run stages another, the torn one is left for `conveyor models --clean`), or once the version
    is published and the run has not returned."""
    config, server, first = served
    tick = Tick(config)
    condition = {"Pusher staging": _staging(config), "Publish done": _published(config)}.get(where) or tick.component_finished(where)
    tick.kill_when(condition, where)
    assert _step(config) == journal.LAUNCHED
    Tick(config).finished()
    _retrained_once(config, server, first, [journal.LAUNCHED])
    staged = [e for e in registry.list_versions(config) if e.state == registry.STAGED]
    assert all(e.cleanable for e in staged) and len(staged) == (where == "Pusher staging"), staged


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("seconds", [3.0, 9.0, 17.0, 26.0, 40.0])
def test_a_retrain_killed_after_any_delay_is_carried_out_once(served, seconds):
    """Killed `seconds` after the tick started, wherever it is (deciding, building, running, recording,
    or done already): the next ticks finish what it decided, once."""
    config, server, first = served
    tick = Tick(config)
    if not tick.kill_after(seconds):  # it finished first: nothing to resume
        tick.finished()
    Tick(config).finished()  # resumes it, or decides afresh if it was killed before deciding
    fired = [d for d in decisions.history(config) if d.fired]
    resumed = [r["step"] for d in fired for r in d.resumed]
    assert len(resumed) <= 1 and set(resumed) <= {journal.DECIDED, journal.FEEDBACK_BUILT, journal.LAUNCHED, journal.RAN}
    _retrained_once(config, server, first, resumed)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_decision_interrupted_three_times_is_recorded_as_a_crash_and_the_retry_trains_on_its_span(served):
    """Killed at the same point again and again (a tick that cannot get past it): after the third
    interruption the decision is recorded as crashed with the feedback span it built, and the retry
    rule launches that span once, as for any crash."""
    config, server, first = served
    for _ in range(3):
        Tick(config, kill_at="feedback_written").killed_itself()
    assert len(journal.read(config).resumes) == 2 and spans_io.existing_spans(config.feedback_spans_root, FEEDBACK) == [1]
    given_up = Tick(config).finished(exit_code=1)  # a crashed decision fails the tick, as a crashed run does
    assert "interrupted 3 times (last at decided): not carried through again" in given_up, given_up
    [crashed] = decisions.history(config)
    assert (crashed.outcome, crashed.span, crashed.span_source, crashed.run_id) == (decisions.CRASHED, 1, FEEDBACK, None)
    retried = Tick(config).finished()
    assert "retry of span feedback-1 after a crash (attempt 2 of 2)" in retried, retried
    retry = decisions.history(config)[-1]
    assert retry.outcome == decisions.OK and retry.pushed_version and _pushed(config) == [first, retry.pushed_version]
    assert spans_io.existing_spans(config.feedback_spans_root, FEEDBACK) == [1] and journal.unfinished(config) is None
    wait_for(lambda: _served(server, config) == retry.pushed_version, 60, f"the server to serve {retry.pushed_version}")


@pytest.fixture(scope="module")
def worse_served(traffic, reference, tmp_path_factory):
    """`traffic` retrained (one tick), then the first model pushed again as the newest version and
    answering shifted trips, their labels in: the next tick's guard rolls back. (Retrain, worse)."""
    base = tmp_path_factory.mktemp("ct-guard")
    config = _copy(traffic, base)
    first = versions.serving_version(config.serving_root)
    with Serve(config.home) as server:
        Tick(config).finished()
        [decision] = [d for d in decisions.history(config) if d.fired]
        retrained = Retrain(config, first, decision.pushed_version, decision)
        worse = _worse_version_served(retrained, server, reference)
    return retrained, worse


GUARD_POINTS = {
    journal.DECIDED: [journal.DECIDED],
    "rollback_returned": [journal.DECIDED],
    journal.ROLLED_BACK: [journal.ROLLED_BACK],
    "recorded": [],
}


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("point", GUARD_POINTS)
def test_a_guard_rollback_killed_at_each_point_is_carried_out_once(worse_served, tmp_path, point):
    retrained, worse = worse_served
    config = _copy(retrained.config, tmp_path)
    retrained = Retrain(config, retrained.first, retrained.new, retrained.decision)
    with Serve(config.home) as server:
        Tick(config, kill_at=point).killed_itself()
        Tick(config).finished()
        _rolled_back_once(retrained, server, worse, GUARD_POINTS[point])
        if point == "rollback_returned":
            [decision] = [d for d in decisions.history(config) if d.fired and d.triggers[0] == "guard"]
            assert decision.resumed[0]["how"] == "the rollback had taken effect before the kill; recorded it"
