"""The serving root: which pushed versions exist and which one serves. The one decision shared by
the pipeline (the Evaluator's baseline), the server, `conveyor models`, lineage and rollback.

A push reaches the serving root in two steps, so that a version is seen only complete and recorded:

  1. Pusher *stages* the blessed model under `<serving_root>/.staging/<version>/` (version = Unix
     seconds, newer than every version there), each file fsync'ed. TFX records the PushedModel in
     ML Metadata only after Pusher's executor returns.
  2. Publish, the next component, runs only once that record exists. It writes the push record
     `PUSH.json` (version, PushedModel and Model ids, and what the CT controller judges the version
     against: its Evaluator's overall metrics `offline_metrics` and `training_statistics`, the file
     of the statistics DataGate validated for the run's span) into the staged folder, fsyncs it, and renames
     the folder to `<serving_root>/<version>/`: one atomic rename(2) on a local disk. On object
     storage (gs://), where no rename is atomic, the files are copied and `PUSH.json` is written last.

A version is *ready* when `<version>/PUSH.json` names that version and `saved_model.pb` is there. A
kill at any moment leaves either nothing visible or a ready version; a folder without its record
(a torn copy, a copy made by hand or by an older Pusher) is *incomplete* and never served, and
leftovers under `.staging/` are listed for `conveyor models --clean` (metadata/registry.py).

Rule: the newest ready version serves, unless a rollback is in force. `conveyor rollback` writes
`<serving_root>/ROLLBACK.json` atomically (temp file fsync'ed, renamed, directory fsync'ed; mode
0644 so a server running as another user reads it) naming the version to serve, the newest version
that existed at that moment and the rollback's ML Metadata execution. The rollback stays in force
until a version newer than that one is pushed: a new push supersedes a rollback (the pipeline
blessed a new model after the operator's decision). A rollback naming a version that has since
disappeared is ignored. A pointer that is not valid JSON of that shape is reported and ignored
(the newest version serves) until `conveyor rollback --clear` or `--to V` replaces it; one that
cannot be read (an I/O error) raises OSError, so a server keeps what it serves rather than guess.
A rollout (pipeline/rollouts.py: a version pushed under `shadow` or `canary:P`) in force makes its
stable version the serving one until it is promoted; a rollback made after the rollout started
overrides it.
Reading works on local paths (os and pathlib: reading the serving root never imports TensorFlow) and
on object storage (through TFX's fileio, data/files.py).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data import files, spans_io
from pipeline import rollouts, statistics_layout

POINTER_FILE = "ROLLBACK.json"
READY_FILE = "saved_model.pb"
RECORD_FILE = "PUSH.json"
STAGING_DIR = ".staging"
# A published version's model card (pipeline/model_card.py), also in the ModelCard artifact.
CARD_DIR, CARD_JSON, CARD_HTML = "model_card", "model_card.json", "model_card.html"
# Keys of the push record read outside the push (older records lack the last two).
PUBLISHED, OFFLINE_METRICS, TRAINING_STATISTICS = "published", "offline_metrics", "training_statistics"
ROLLOUT = "rollout"  # the push's rollout policy (pipeline/rollouts.py; older records lack it: direct)


@dataclass(frozen=True)
class Rollback:
    """A rollback as recorded in the pointer file."""

    version: str
    newest_at_rollback: str
    time: float
    execution_id: int | None = None  # the rollback's record in ML Metadata (serving/rollback.py)

    def in_force(self, ready: list[str]) -> bool:
        return self.version in ready and not any(int(v) > int(self.newest_at_rollback) for v in ready)


def _names(folder: str) -> list[str]:
    if not files.isdir(folder):
        return []
    return sorted((n for n in files.listdir(folder) if n.isdigit()), key=int)


def read_record(serving_root: str | Path, version: str) -> dict[str, Any] | None:
    """The push record of published `version` (None: not published, or the record is unreadable)."""
    path = os.path.join(str(serving_root), version, RECORD_FILE)
    if not files.exists(path):
        return None
    try:
        record = json.loads(files.read_bytes(path))
    except (ValueError, FileNotFoundError):  # not JSON, or removed since (`models --clean`)
        return None
    return record if isinstance(record, dict) else None


def is_ready(serving_root: str | Path, version: str) -> bool:
    """Published by the two-step push: its record names it and its SavedModel is complete."""
    record = read_record(serving_root, version)
    return (
        record is not None
        and str(record.get("version")) == version
        and files.exists(os.path.join(str(serving_root), version, READY_FILE))
    )


def ready_versions(serving_root: str | Path) -> list[str]:
    """Published versions (complete and recorded), oldest first."""
    return [v for v in _names(str(serving_root)) if is_ready(serving_root, v)]


def incomplete_versions(serving_root: str | Path) -> list[str]:
    """Version folders in the serving root that are not published: never served, to be cleaned."""
    return [v for v in _names(str(serving_root)) if not is_ready(serving_root, v)]


def staged_versions(serving_root: str | Path) -> list[str]:
    """Versions staged by Pusher and not (yet) published, oldest first."""
    return _names(os.path.join(str(serving_root), STAGING_DIR))


def staged_path(serving_root: str | Path, version: str) -> str:
    return os.path.join(str(serving_root), STAGING_DIR, version)


def read_rollback(serving_root: str | Path) -> Rollback | None:
    """The rollback pointer; ValueError if it is not a valid one, OSError if it cannot be read."""
    path = os.path.join(str(serving_root), POINTER_FILE)
    if not files.exists(path):
        return None
    try:
        text = files.read_bytes(path)
    except Exception as exc:  # fileio raises TensorFlow's errors for some file systems
        raise OSError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
        rollback = Rollback(
            str(data["version"]), str(data["newest_at_rollback"]), float(data["time"]),
            int(data["execution_id"]) if data.get("execution_id") is not None else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a valid rollback pointer ({type(exc).__name__}: {exc})") from None
    if not (rollback.version.isdigit() and rollback.newest_at_rollback.isdigit()):
        raise ValueError(f"{path} is not a valid rollback pointer (versions must be integers: {data!r:.200})")
    return rollback


@dataclass(frozen=True)
class ServingState:
    """Which version serves and why."""

    version: str | None  # None: nothing is pushed
    ready: list[str]
    rollback: Rollback | None  # the pointer, in force or not (None if absent or invalid)
    pointer_error: str | None = None  # the pointer is invalid and ignored: what is wrong, how to repair
    rollout: rollouts.Rollout | None = None  # the rollout state, when it governs what serves (pipeline/rollouts.py)

    @property
    def rollback_in_force(self) -> bool:
        return self.rollback is not None and self.rollback.in_force(self.ready)


def serving_state(serving_root: str | Path) -> ServingState:
    """The serving rule (module docstring) with its evidence; OSError if the root cannot be read."""
    ready = ready_versions(serving_root)
    try:
        rollback, error = read_rollback(serving_root), None
    except ValueError as exc:
        rollback = None
        error = f"{exc}; ignored, the newest version serves (repair: conveyor rollback --clear, or --to VERSION)"
    try:
        rollout = rollouts.read(serving_root)
    except ValueError as exc:
        rollout = None
        error = f"{exc}; ignored, the newest version serves (repair: conveyor rollout abort, or push again)"
    if rollout is not None and not rollout.in_force(ready):
        rollout = None
    if rollback is not None and rollback.in_force(ready) and (rollout is None or rollback.time >= rollout.started):
        return ServingState(rollback.version, ready, rollback)  # an operator's rollback overrides a rollout
    if rollout is not None:
        return ServingState(rollout.serving(), ready, rollback, error, rollout)
    return ServingState(ready[-1] if ready else None, ready, rollback, error)


def serving_version(serving_root: str | Path) -> str | None:
    """The version that serves now (see the module docstring), None if nothing is pushed."""
    return serving_state(serving_root).version


def version_of_model(serving_root: str | Path, model_id: int) -> str | None:
    """The newest published version whose push record names Model `model_id` (None: never published)."""
    from pipeline.artifact_properties import MODEL_ID_PROPERTY

    found = [v for v in ready_versions(serving_root) if (read_record(serving_root, v) or {}).get(MODEL_ID_PROPERTY) == model_id]
    return found[-1] if found else None


def card_file(serving_root: str | Path, version: str, name: str) -> str:
    """A file of version `version`'s model card (pipeline/model_card.py), e.g. model_card.html."""
    return os.path.join(str(serving_root), version, CARD_DIR, name)


def stage_file(serving_root: str | Path, version: str, relative: str, data: bytes) -> None:
    """Write a file into staged `version` before it is published (durably: it is renamed with the
    version, so it is there as soon as the version is)."""
    from tfx.utils import io_utils

    path = os.path.join(staged_path(serving_root, version), relative)
    if spans_io.is_uri(str(serving_root)):
        io_utils.write_bytes_file(path, data)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    files.fsync(Path(path).parent)


def live_since(serving_root: str | Path, version: str) -> float:
    """When `version` last started serving (Unix seconds): the rollback that made it serve, if one is
    in force, else its publication (its push record; versions are named by their staging time).
    Evidence about a version is counted from here, so a version that serves again after a rollback
    starts with a clean slate. A cleared pointer leaves nothing here: serving/rollback.py `live_since`
    adds the time its record in ML Metadata gives."""
    state = serving_state(serving_root)
    if state.rollback_in_force and state.rollback.version == version:
        return state.rollback.time
    return published_at(serving_root, version)


def training_statistics_file(statistics_uri: str) -> str:
    """A model's training statistics in a validated statistics artifact of DataGate: its train
    split's TFDV file (the push record's `training_statistics`, and lineage's)."""
    return statistics_layout.split_file(statistics_uri)


def published_at(serving_root: str | Path, version: str) -> float:
    """When `version` was published (its push record; versions are named by their staging time)."""
    record = read_record(serving_root, version) or {}
    return float(record.get(PUBLISHED, version))


def write_rollback(serving_root: Path, version: str, execution_id: int | None = None) -> Rollback:
    """Make `version` serve until a newer version is pushed; atomic and durable."""
    ready = ready_versions(serving_root)
    if version not in ready:
        raise ValueError(f"version {version} is not a pushed version under {serving_root} (have: {ready or 'none'})")
    rollback = Rollback(version=version, newest_at_rollback=ready[-1], time=time.time(), execution_id=execution_id)
    spans_io.write_text(Path(serving_root) / POINTER_FILE, json.dumps(rollback.__dict__))  # 0644: a server of another user reads it
    return rollback


def clear_rollback(serving_root: Path) -> bool:
    """Remove the rollback pointer (valid or not): the newest version serves. False if none."""
    path = Path(serving_root) / POINTER_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    files.fsync(path.parent)
    return True


def new_version(serving_root: str | Path) -> str:
    """Unix seconds now, or one more than the newest version published or staged if that is later."""
    taken = _names(str(serving_root)) + staged_versions(serving_root)
    return str(max([int(time.time())] + [int(v) + 1 for v in taken]))



def _copy_synced(source: Path, target: Path) -> None:
    """Copy the folder `source` to `target`, every file and folder fsync'ed, saved_model.pb last."""
    copied = sorted(p for p in source.rglob("*") if p.is_file())
    copied.sort(key=lambda p: p.name == READY_FILE and p.parent == source)
    target.mkdir(parents=True)
    for path in copied:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        files.fsync(destination)
    for folder in sorted({p.parent for p in target.rglob("*")} | {target}, key=lambda p: len(p.parts), reverse=True):
        files.fsync(folder)


def stage(model_dir: str, serving_root: str | Path, version: str) -> str:
    """Step 1 of a push: copy the SavedModel in `model_dir` to the staging area; returns its path."""
    from tfx.utils import io_utils

    target = staged_path(serving_root, version)
    if spans_io.is_uri(target):
        io_utils.copy_dir(model_dir, target, deny_regex_patterns=[r"saved_model\.pb"])
        io_utils.copy_file(os.path.join(model_dir, READY_FILE), os.path.join(target, READY_FILE))
        return target
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    _copy_synced(Path(model_dir), Path(target))
    return target


def publish(serving_root: str | Path, version: str, record: dict[str, Any], rollout: str = rollouts.DIRECT) -> str:
    """Step 2 of a push: make staged `version` ready with its push record; idempotent. Under a
    `shadow` or `canary:P` policy the rollout state naming the version serving now as stable is
    written first (pipeline/rollouts.py), so the version never serves ahead of its rollout."""
    from tfx.utils import io_utils

    root = str(serving_root)
    final, staged = os.path.join(root, version), staged_path(root, version)
    if is_ready(root, version):
        return final  # published already (a re-run after a kill between the rename and the record)
    if not files.exists(os.path.join(staged, READY_FILE)):
        raise FileNotFoundError(f"version {version} is neither published under {root} nor staged in {staged}")
    policy = rollouts.parse_policy(rollout)
    body = json.dumps({**record, "version": version, PUBLISHED: time.time(), ROLLOUT: str(policy)}, sort_keys=True)
    stable = serving_version(root)
    if policy.mode != rollouts.DIRECT and stable is not None and int(stable) < int(version):
        rollouts.write(root, rollouts.start(stable, version, policy))
    if spans_io.is_uri(root):
        io_utils.copy_dir(staged, final, deny_regex_patterns=[RECORD_FILE.replace(".", r"\.")])
        io_utils.write_string_file(os.path.join(final, RECORD_FILE), body)  # last: the version is ready
        files.rmtree(staged)
        return final
    if os.path.isdir(final):  # a folder of that name that is not published: never served, set aside
        shutil.rmtree(final)
    with open(os.path.join(staged, RECORD_FILE), "w") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    files.fsync(Path(staged))
    os.rename(staged, final)
    files.fsync(Path(root))
    return final


def remove(serving_root: str | Path, version: str, staged: bool) -> None:
    """Delete a version folder that is not published (`staged`: the one under the staging area)."""
    path = staged_path(serving_root, version) if staged else os.path.join(str(serving_root), version)
    if not staged and is_ready(serving_root, version):
        raise ValueError(f"version {version} is published; only unpublished folders are removed")
    files.rmtree(path)


def republish(serving_root: Path, version: str, new_version: str, rollout: str = rollouts.DIRECT) -> Path:
    """Publish a copy of published `version` as `new_version` through the same two steps (a push
    without a pipeline run: benchmarks and tests use it to make the server swap). The copy's record
    says what it copies; ML Metadata has no push of its own, so `conveyor models` says so and
    rollback refuses it."""
    record = read_record(serving_root, version) or {}
    stage(str(Path(serving_root) / version), serving_root, new_version)
    (Path(staged_path(serving_root, new_version)) / RECORD_FILE).unlink(missing_ok=True)
    publish(serving_root, new_version, {**record, "copy_of": version}, rollout)
    return Path(serving_root) / new_version
