"""The two-step push (pipeline/versions.py) and the registry's reconciliation, without a pipeline run.

The kill -9 tests of a real `conveyor run` are in tests/test_crash_safety.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from metadata import registry
from pipeline import configs, home_lock, versions
from tests.serving_helpers import CONVEYOR, publish_fake


def test_a_staged_version_is_invisible_until_published_and_publishing_is_idempotent(tmp_path):
    root = tmp_path / "serving_model"
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(b"w" * 1000)
    (model / versions.READY_FILE).write_bytes(b"g" * 500)
    versions.stage(str(model), root, "100")
    assert versions.staged_versions(root) == ["100"]
    assert versions.ready_versions(root) == [] and versions.serving_version(root) is None
    path = versions.publish(root, "100", {"pushed_model_id": 7, "model_id": 3})
    assert versions.ready_versions(root) == ["100"] and versions.staged_versions(root) == []
    record = json.loads((Path(path) / versions.RECORD_FILE).read_text())
    assert (record["version"], record["pushed_model_id"], record["model_id"]) == ("100", 7, 3)
    assert (Path(path) / versions.READY_FILE).read_bytes() == b"g" * 500
    assert versions.publish(root, "100", {"pushed_model_id": 7}) == path  # a re-run after a kill
    with pytest.raises(FileNotFoundError, match=r"neither published .* nor staged"):
        versions.publish(root, "200", {})


def test_folders_that_were_never_published_are_incomplete_and_never_served(tmp_path):
    root = tmp_path / "serving_model"
    publish_fake(root, "100")
    torn = root / "200"  # what TFX's Pusher left when killed mid-copy: a torn saved_model.pb
    shutil.copytree(root / "100", torn)
    (torn / versions.RECORD_FILE).unlink()
    (torn / versions.READY_FILE).write_bytes(b"gr")
    shutil.copytree(root / "100", root / "300")  # a copy by hand: its record names version 100
    assert versions.ready_versions(root) == ["100"]
    assert versions.incomplete_versions(root) == ["200", "300"]
    assert versions.serving_version(root) == "100"
    assert int(versions.new_version(root)) >= max(301, int(time.time()))


def test_conveyor_models_shows_and_cleans_incomplete_and_unrecorded_versions(tmp_path):
    home = tmp_path / "home"
    root = home / "serving_model"
    publish_fake(root, "100")
    (root / "200").mkdir()
    (root / "200" / versions.READY_FILE).write_bytes(b"torn")
    model = tmp_path / "model"
    model.mkdir()
    (model / versions.READY_FILE).write_bytes(b"graph")
    versions.stage(str(model), root, "300")
    listing = subprocess.run([CONVEYOR, "models", "--home", str(home)], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    lines = {line[2:].split()[0]: line for line in listing.stdout.splitlines() if line[2:5] in ("100", "200", "300")}
    assert lines["100"].startswith("* ")
    assert "incomplete or unrecorded folder: never served" in lines["200"]
    assert "staged by a push that was never recorded" in lines["300"]

    with home_lock.hold(home, "a test writer"):  # --clean is a writer: it waits for no one
        busy = subprocess.run([CONVEYOR, "models", "--home", str(home), "--clean"], capture_output=True, text=True, timeout=120)
    assert busy.returncode == home_lock.BUSY_EXIT_CODE and "busy: a test writer" in busy.stderr
    assert (root / "200").exists()

    cleaned = subprocess.run([CONVEYOR, "models", "--home", str(home), "--clean"], capture_output=True, text=True, timeout=120)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 200 (incomplete)" in cleaned.stdout and "removed 300 (staged)" in cleaned.stdout
    assert "cleaned 2 version folder(s)" in cleaned.stdout
    assert sorted(p.name for p in root.iterdir()) == [versions.STAGING_DIR, "100"]
    assert versions.staged_versions(root) == []
    assert [e.version for e in registry.list_versions(configs.load(home=home))] == ["100"]
