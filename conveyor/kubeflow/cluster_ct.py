"""`conveyor ct tick|watch|run --target kfp|vertex --home gs://BUCKET/conveyor`: continuous training on a cluster.

The tick decides with the controller's own code (ct/controller.py), exactly as locally, on a
working config whose roots are the cluster home's: the serving root, the spans, the feedback spans,
the validated-span index and the ingested-span records are read in the bucket (TFX's fileio, i.e.
TensorFlow's gfile: gs://, s3://, hdfs:// or a local path), so the controller finds the serving
version, its push record (offline metrics, training statistics: pipeline/versions.py) and the span
listing where a cluster run left them. Only what it reads whole or writes is mirrored into a local
working home:

  1. pull: the decision log (`ct/`), the controller's ML Metadata file (its CTDecision records),
     the servers' request log and the labels (`request_log/`, `labels/`). No span file is copied:
     spans are listed in place, and a feedback span is built from the request log and labels;
  2. the controller ticks. A launch first pushes what the tick wrote so far (a feedback span it
     built must be in the bucket before the run reads it), compiles the spec for the chosen span,
     submits it with the span and the trigger in the run's name (and labels, on Vertex), then polls
     the orchestrator until the run ends and records its outcome like a local run's: ok (pushed or
     not, fully cached or not), blocked (DataGate failed) or crashed. The span is then recorded as
     ingested in the bucket (metadata/spans.py), so the next tick sees it as taken;
  3. push: what the tick changed goes back to the bucket (the decision log, the ML Metadata file, a
     feedback span it built); the request log and labels are only read, and a span already in the
     bucket is never overwritten (spans are immutable on KFP).

One tick at a time per cluster home: schedule it with `concurrencyPolicy: Forbid`
(deploy/ct-tick.yaml), or run `conveyor ct watch --target ...` in one place. See
docs/production.md, "Continuous training on a cluster".
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from conveyor.kubeflow import cluster_runs
from conveyor.kubeflow import compiler as kubeflow
from ct import journal
from metadata import spans
from pipeline import versions
from pipeline.configs import PipelineConfig

# What the tick copies from the cluster home: these it writes back when changed, those it only reads.
WRITTEN = ("ct", "metadata.sqlite")
READ_ONLY = ("request_log", "labels")
FEEDBACK_SPANS = os.path.join("feedback", "spans")  # read in place; a span the tick builds is pushed
# Task states that mean "served from the cache": Vertex's SKIPPED ("skipped due to cache hit"),
# and KFP's, which reports a cached task as SKIPPED too.
CACHED_TASK_STATES = {"SKIPPED", "CACHED"}


def _fileio():
    from tfx.dsl.io import fileio

    return fileio


def _files(root: str) -> list[str]:
    """Paths of every file under `root` (a URI or local path), relative to it; [] if absent."""
    fileio = _fileio()
    if not fileio.exists(root):
        return []
    if not fileio.isdir(root):
        return [""]
    found = []
    for folder, _, names in fileio.walk(root):
        relative = os.path.relpath(str(folder), root)
        found += [os.path.normpath(os.path.join(relative, name.rstrip("/"))) for name in names]
    return sorted(found)


def _read(path: str) -> bytes:
    with _fileio().open(path, "rb") as handle:
        return handle.read()


def _write(path: str, data: bytes) -> None:
    fileio = _fileio()
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as handle:
        handle.write(data)


def _join(root: str, relative: str) -> str:
    return root if relative in ("", ".") else os.path.join(root, relative)


@dataclass
class Mirror:
    """A local copy of part of a cluster home, and what was pulled (to push back only changes)."""

    home_uri: str
    local: Path
    feedback_spans_uri: str
    pulled: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of what the bucket holds

    def pull(self) -> None:
        """Replace the local copies with the bucket's (a reused working home keeps nothing stale)."""
        for name in (*WRITTEN, *READ_ONLY, FEEDBACK_SPANS):
            target = self.local / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        self.pulled = {}
        for name in (*WRITTEN, *READ_ONLY):
            source = _join(self.home_uri, name)
            for relative in _files(source):
                data = _read(_join(source, relative))
                key = os.path.normpath(os.path.join(name, relative))
                (self.local / key).parent.mkdir(parents=True, exist_ok=True)
                (self.local / key).write_bytes(data)
                self.pulled[key] = hashlib.sha256(data).hexdigest()

    def push(self) -> list[str]:
        """Write back what changed under WRITTEN since the pull (or the last push), and the files of
        feedback spans the bucket does not have; returns what was written."""
        written = []
        for name in WRITTEN:
            for relative in _files(str(self.local / name)):
                key = os.path.normpath(os.path.join(name, relative))
                data = (self.local / key).read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if self.pulled.get(key) != digest:
                    _write(_join(self.home_uri, key), data)
                    self.pulled[key] = digest
                    written.append(key)
        for relative in _files(str(self.local / FEEDBACK_SPANS)):
            target = _join(self.feedback_spans_uri, relative)
            if not _fileio().exists(target):
                _write(target, (self.local / FEEDBACK_SPANS / relative).read_bytes())
                written.append(os.path.join(FEEDBACK_SPANS, relative))
        return written


@dataclass
class ClusterOutcome:
    """A finished (or given up on) cluster run, as the controller reads a run (ct/launcher.py RunOutcome)."""

    run_id: str | None
    ok: bool
    span: int | None
    error: str | None = None
    pushed_path: str | None = None
    drift: dict | None = None  # DataGate's report stays with the run's artifacts on the cluster
    timings: list[tuple[str, str, float]] = field(default_factory=list)
    run_name: str | None = None

    @property
    def blessed(self) -> bool:
        """Blessed and pushed: which of the Evaluator and InfraCheck refused is in the run's artifacts."""
        return self.pushed_path is not None

    @property
    def refusals(self) -> list[str]:
        if self.ok and not self.pushed_path:
            return [f"the run pushed no version: the Evaluator's verdict.json and InfraCheck's blessing in run {self.run_name} say why"]
        return []


@dataclass
class ClusterLaunch:
    """The controller's Launch for a cluster: submit, wait for the end, report it like a local run."""

    target: str
    image: str
    spec_dir: Path
    endpoint: str | None = None
    experiment: str = "conveyor"
    service_account: str | None = None
    poll_seconds: float = 60.0
    timeout_seconds: float = 6 * 3600.0
    credentials: Any = None
    clock: Callable[[], float] = time.monotonic
    submitted: list[cluster_runs.SubmittedRun] = field(default_factory=list)

    def __call__(self, config: PipelineConfig, trigger: str) -> ClusterOutcome:
        before = self.ready(config)
        sent = self.submit(config, trigger, time.time())
        return sent if isinstance(sent, ClusterOutcome) else self.follow(config, sent, before)

    def ready(self, config: PipelineConfig) -> list[str]:
        """The versions ready in the cluster's serving root (before a run: what it pushed is what is new)."""
        return versions.ready_versions(kubeflow.cluster_config(config, self.target).serving_root_uri)

    def submit(self, config: PipelineConfig, trigger: str, when: float, sent_as: str | None = None) -> cluster_runs.SubmittedRun | ClusterOutcome:
        """Send the run of `config.span`, named by `when` (cluster_runs.submit; `sent_as`: the id of
        the run already sent under that name, nothing is sent); the outcome of a run not sent."""
        try:
            run = cluster_runs.submit(
                config, config.span, trigger, self.target, self.image, self.spec_dir, endpoint=self.endpoint,
                experiment=self.experiment, service_account=self.service_account, when=when, sent_as=sent_as,
            )
        except (kubeflow.SubmitError, ValueError) as exc:
            return ClusterOutcome(run_id=None, ok=False, span=config.span, error=f"not submitted: {exc}")
        self.submitted.append(run)
        return run

    def find(self, config: PipelineConfig, trigger: str, when: float) -> str | None:
        """The id of the run `submit(config, trigger, when)` sent, if the orchestrator has it."""
        return cluster_runs.find(config, config.span, trigger, self.target, when, endpoint=self.endpoint, credentials=self.credentials)

    def follow(self, config: PipelineConfig, run: cluster_runs.SubmittedRun, before: list[str]) -> ClusterOutcome:
        """Poll `run` until it ends (or the timeout) and report it like a local run; `before`: the
        versions ready in the serving root before it was sent (what it pushed is what is new)."""
        cluster = kubeflow.cluster_config(config, self.target)
        started = self.clock()
        while True:
            try:
                state = cluster_runs.state(run, cluster, endpoint=self.endpoint, credentials=self.credentials)
            except kubeflow.SubmitError as exc:
                state = None
                error = f"{run.run_name}: {exc}"
            if state is not None and state.done:
                break
            if self.clock() - started >= self.timeout_seconds:
                word = state.state if state else "unknown"
                return ClusterOutcome(
                    run_id=run.run_id, ok=False, span=run.span, run_name=run.run_name,
                    error=f"TimeoutError: run {run.run_name} still {word} after {self.timeout_seconds:.0f} s "
                    f"(not cancelled){'; last poll: ' + error if state is None else ''}",
                )
            time.sleep(self.poll_seconds)
        spans.record_ingested(cluster, run.span, run.run_id, state.state, config.span_source)
        pushed = sorted(set(versions.ready_versions(cluster.serving_root_uri)) - set(before), key=int)
        timings = [(task, "cached" if word in CACHED_TASK_STATES else word.lower(), 0.0) for task, word in state.tasks]
        if not timings:  # the orchestrator listed no tasks: do not let the controller call it "fully cached"
            timings = [("run", state.state.lower(), 0.0)]
        error = None
        if not state.succeeded:
            kind = "DataValidationError" if state.blocked else "RunFailed"
            error = f"{kind}: {state.failed_task or 'the run'} failed on {self.target} ({state.state}): {state.error}"
        return ClusterOutcome(
            run_id=run.run_id,
            ok=state.succeeded,
            span=run.span,
            error=error,
            pushed_path=os.path.join(cluster.serving_root_uri, pushed[-1]) if pushed else None,
            timings=timings,
            run_name=run.run_name,
        )


def working_config(config: PipelineConfig, home_uri: str, work_dir: Path) -> PipelineConfig:
    """The controller's config: a local working home, every cluster root in the bucket under `home_uri`
    (the pipeline root, as the compiled spec lays it out: kubeflow.stores_form)."""
    root = (config.remote_pipeline_root or home_uri).rstrip("/")
    local = config.replace(home=work_dir, spans_root=work_dir / "spans")  # spans are read in the bucket
    return kubeflow.stores_form(local, root, kubeflow.IMAGE_APP_DIR)


def tick(
    config: PipelineConfig,
    home_uri: str,
    launch: ClusterLaunch,
    reason: str | None = None,
    work_dir: Path | None = None,
    now: float | None = None,
):
    """One CT decision for the cluster home `home_uri` (see the module docstring); returns it. A
    working home made here (no `work_dir`) is removed afterwards."""
    from ct import controller

    made = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="conveyor-ct-")) if made else Path(work_dir)
    try:
        working = working_config(config, home_uri, work_dir)
        mirror = Mirror(home_uri.rstrip("/"), work_dir, working.feedback_spans_root_uri)
        mirror.pull()

        def launch_from_the_bucket(run_config: PipelineConfig, trigger: str) -> ClusterOutcome:
            mirror.push()  # the journal, and a feedback span just built (the run reads it in the bucket), go first
            return _send_once(working, mirror, launch, run_config, trigger)

        decision = controller.tick(working, launch_from_the_bucket, now=now, reason=reason)
        mirror.push()
        return decision
    finally:
        if made:
            shutil.rmtree(work_dir, ignore_errors=True)


def _send_once(working: PipelineConfig, mirror: Mirror, launch: ClusterLaunch, run_config: PipelineConfig, trigger: str) -> ClusterOutcome:
    """Launch the decision's run on the cluster at most once, whatever tick was killed when: the
    journal (ct/journal.py), in the bucket before anything is sent, names the run to send (`when`
    names it) and then the run sent; a tick that finds a name and no run asks the orchestrator."""
    intent = journal.unfinished(working)
    sent = (intent.submitted if intent else None) or {}
    if "run" in sent:  # sent by a tick that was killed: follow it
        run = cluster_runs.SubmittedRun(**{**sent["run"], "tasks": tuple(sent["run"]["tasks"])})
        return launch.follow(run_config, run, sent["ready_before"])
    if "when" in sent:  # a killed tick was sending it: sent or not, the orchestrator knows it by its name
        try:
            found = launch.find(run_config, trigger, sent["when"])
        except kubeflow.SubmitError as exc:
            return ClusterOutcome(run_id=None, ok=False, span=run_config.span, error=f"not submitted: {exc}")
    else:
        found, sent = None, {"when": time.time(), "ready_before": launch.ready(run_config)}
        if intent is not None:
            intent.submitted = sent
            journal.write(working, intent, intent.step, kill=False)
            mirror.push()
            journal.kill_point("submitting")
    run = launch.submit(run_config, trigger, sent["when"], sent_as=found)
    if isinstance(run, ClusterOutcome):
        return run
    journal.kill_point("sent")
    if intent is not None:
        intent.submitted = {**sent, "run": run.to_json()}
        journal.write(working, intent, intent.step, kill=False)
        mirror.push()
        journal.kill_point("submitted")
    return launch.follow(run_config, run, sent["ready_before"])
