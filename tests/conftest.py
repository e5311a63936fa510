"""Shared fixtures. Beam runs in_memory and gRPC fork support is off (as TFX's own tests do).

`make test` runs the files on two pytest-xdist workers; the expensive session fixtures (a real
pipeline run each) are built once per test session by whichever worker needs them first.
Tests that run no pipeline and start no server are marked `unit` here (tests/tiers.py): `make test-fast`.
"""
from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from typing import Any, Callable

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import pytest

from data import materialize, spans_io
from tests import tiers

_GUARD = tiers.Guard()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.mark(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _GUARD.watch(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _GUARD.watch(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    with _GUARD.watch(item):
        return (yield)


@pytest.fixture(scope="session")
def shipped_spans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default spans, materialised from the installed tfx wheel into a temp folder."""
    root = tmp_path_factory.mktemp("spans")
    materialize.materialize(root)
    return root


@pytest.fixture(scope="session")
def shipped_rows(shipped_spans: Path) -> list[dict[str, str]]:
    return spans_io.read_rows(spans_io.span_dir(shipped_spans, 1) / spans_io.SPAN_FILE)


SMALL_SPAN_ROWS = 800


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> Any:
    """`build(folder)` once per test session. Under pytest-xdist the first worker builds it in the
    session's shared temp folder, holding a lock, and the others wait and read its pickled result."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    root.mkdir(exist_ok=True)
    result = root / "result.pickle"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            value = build(root / "data")
            result.write_bytes(pickle.dumps(value))
        return pickle.loads(result.read_bytes())


@pytest.fixture(scope="session")
def small_run(shipped_rows, tmp_path_factory):
    """One clean pipeline run on a small span 1 (800 rows, 100 steps): blessed and pushed.

    Shared read-only by tests that need real artifacts (MLMD, a pushed model, an evaluation).
    Returns (config, summary).
    """
    from conveyor.local import runner as local_run
    from pipeline import configs

    def build(base: Path):
        config = configs.load(home=base / "home", spans_root=base / "spans", train_steps=100, eval_steps=5, span=1)
        spans_io.write_span(config.spans_root, 1, shipped_rows[:SMALL_SPAN_ROWS])
        summary = local_run.run(config)
        assert summary.ok and summary.pushed_path, summary.error
        return config, summary

    return built_once(tmp_path_factory, "small_run", build)


@pytest.fixture(scope="session")
def blocked_run(small_run, shipped_rows, tmp_path_factory):
    """A copy of small_run's home plus one more run, on a span 2 that DataGate blocks (unknown
    payment types): no Transform or Trainer, so it is cheap. Afterwards the latest run has
    anomalies, spans 1 and 2 have statistics, and the latest evaluation is small_run's.
    Returns (config, summary of the blocked run)."""
    from conveyor.local import runner as local_run

    small_config, _ = small_run

    def build(base: Path):
        config = small_config.replace(home=base / "home", spans_root=base / "spans", span=2)
        shutil.copytree(small_config.home, config.home)
        shutil.copytree(small_config.spans_root, config.spans_root)
        rows = [dict(r) for r in shipped_rows[SMALL_SPAN_ROWS : 2 * SMALL_SPAN_ROWS]]
        for row in rows[:40]:
            row["payment_type"] = "Bitcoin"
        spans_io.write_span(config.spans_root, 2, rows)
        summary = local_run.run(config)
        assert not summary.ok and summary.failed_component == "DataGate", summary.error
        return config, summary

    return built_once(tmp_path_factory, "blocked_run", build)
