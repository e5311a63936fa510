"""`conveyor ct demo` writes only a scratch home it makes, or an empty folder it is given: the
installed command on real folders, refused before anything is written. The loop the demo plays is
driven end to end by tests/test_ct_loop.py."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.serving_helpers import CONVEYOR


def demo(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """`conveyor ct demo ARGS` with TMPDIR=`tmp` (where it would make its scratch home). On a refusal
    it exits at once; the timeout only bounds a demo that wrongly starts."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run([str(CONVEYOR), "ct", "demo", *args], capture_output=True, text=True, timeout=120, env=env)


def tree(folder: Path) -> list[tuple[str, bytes | None]]:
    """Every path under `folder` with its bytes (None for a folder)."""
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


def refused(result: subprocess.CompletedProcess, *named: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming each of `named`."""
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("conveyor ct demo: ") and all(n in lines[0] for n in named), result.stderr


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def test_a_home_with_anything_in_it_is_refused_and_left_as_it_was(tmp_path, tmp):
    home = tmp_path / "outputs"  # what `--home outputs` names: every model and the metadata
    (home / "serving_model" / "1700000000").mkdir(parents=True)
    (home / "serving_model" / "1700000000" / "saved_model.pb").write_bytes(b"a pushed model")
    (home / "metadata.sqlite").write_bytes(b"the lineage")
    before = tree(home)
    refused(demo("--home", str(home), tmp=tmp), f"--home {home}", "not empty")
    assert tree(home) == before and tree(tmp) == []


def test_a_home_that_is_a_file_is_refused_and_left_as_it_was(tmp_path, tmp):
    home = tmp_path / "notes.txt"
    home.write_text("mine")
    refused(demo("--home", str(home), tmp=tmp), f"--home {home}", "not a folder")
    assert home.read_text() == "mine" and tree(tmp) == []


@pytest.mark.parametrize("flag", ["--spans-root", "--drift-policy"])
def test_flags_the_demo_would_ignore_are_refused(tmp_path, tmp, flag):
    """The demo makes its own spans and keeps the default drift policy: such a flag is an error, not silence."""
    home, spans = tmp_path / "demo", tmp_path / "spans"
    value = str(spans) if flag == "--spans-root" else "block"
    refused(demo("--home", str(home), flag, value, tmp=tmp), flag)
    assert not home.exists() and not spans.exists() and tree(tmp) == []
