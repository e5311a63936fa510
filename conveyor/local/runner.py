"""Run the pipeline locally (LocalDagRunner; MLMD on SQLite or MySQL; Beam as configured) and summarise it."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import speedups
from conveyor.local.progress import quiet_logs
from conveyor.local.run_summary import RunSummary, read_back
from metadata import connection, runs
from pipeline import home_lock
from pipeline.configs import PipelineConfig
from speedups import gc_tuning, switch


def run(config: PipelineConfig, verbose: bool = False, started: float | None = None) -> RunSummary:
    """Run one pipeline pass; never raises for a pipeline failure (see RunSummary.ok/error).

    The caller holds the home's writer lock (pipeline/home_lock.py), so the one pipeline_run that
    appears in ML Metadata while this runs is this run: the summary and the report read that one.
    `started` (time.monotonic) is when the caller began this pass, for the summary's wall time.
    Ctrl-C stops the run wherever it is (Beam and TFX wrap the KeyboardInterrupt in errors of their
    own): the summary says so (`interrupted`), and the caller exits as interrupted.
    """
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    log_file = config.logs_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    error = failed = None
    started = time.monotonic() if started is None else started  # `total`: the pass's wall time, imports included
    with quiet_logs(log_file, verbose) as progress, _scratch(config.home), _noting_interrupts() as interrupts:
        before: set[str] = set()
        try:
            from tfx import v1 as tfx

            from pipeline.pipeline import create_pipeline

            speedups.for_runs()
            logging.info(switch.describe())
            mlmd = connection.connection_config(config)
            before = _run_ids(config, mlmd)
            with gc_tuning.leave_loaded_out():
                tfx.orchestration.LocalDagRunner().run(create_pipeline(config, mlmd))
        except (Exception, KeyboardInterrupt) as exc:  # reported in the summary, traceback in the log
            logging.exception("the run failed")
            error, failed = f"{type(exc).__name__}: {exc}", progress.failed_component()
        summary = RunSummary(
            run_id=None,
            ok=error is None and not interrupts,
            seconds=0.0,
            log_file=log_file,
            timings=progress.timings,
            error="interrupted (Ctrl-C)" if interrupts else error,
            failed_component=failed,
            interrupted=bool(interrupts),
        )
        try:
            summary.run_id = _new_run_id(config, before)
            read_back(config, summary)
        except Exception as exc:  # reading back must not hide the run's own outcome
            logging.exception("could not read the run back from ML Metadata")
            summary.ok = False
            summary.error = summary.error or f"reading the run back failed: {type(exc).__name__}: {exc}"
        summary.report_file = _write_report(config, summary)
        summary.seconds = time.monotonic() - started
    return summary


@contextlib.contextmanager
def _noting_interrupts() -> Iterator[list[int]]:
    """Yield a list that gets an entry per SIGINT received meanwhile; each still raises
    KeyboardInterrupt as Python's own handler does (only in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    saved = signal.signal(signal.SIGINT, note)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, saved)


def launch(config: PipelineConfig, trigger: str) -> RunSummary:
    """The CT controller's Launch for a local home (ct/launcher.py): a run, whose model card names
    the trigger (the decision log keeps it too). An interrupted run stops the tick too (KeyboardInterrupt)."""
    summary = run(config.replace(trigger=f"CT controller: {trigger}"))
    if summary.interrupted:
        raise KeyboardInterrupt
    return summary


@contextlib.contextmanager
def _scratch(home: Path) -> Iterator[None]:
    """The run's temp folder: `<home>/tmp/run-<pid>`, TMPDIR for the libraries and Beam's worker
    processes, removed when the run ends (Beam leaves a folder per pipeline in the temp folder, TFX
    its build folders). A folder left by a killed run is removed by the next run."""
    root = home / "tmp"
    for stale in root.glob("run-*"):
        pid = stale.name.removeprefix("run-")
        if pid.isdigit() and not home_lock.alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    scratch = root / f"run-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(scratch), str(scratch)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(scratch, ignore_errors=True)


def _run_ids(config: PipelineConfig, mlmd) -> set[str]:
    if not connection.store_exists(config):
        return set()
    return set(runs.run_ids(connection.open_store(mlmd), config.pipeline_name))


def _new_run_id(config: PipelineConfig, before: set[str]) -> str | None:
    """The pipeline_run this run created (None: it failed before its first component)."""
    new = [r for r in runs.run_ids(connection.open_store(connection.connection_config(config)), config.pipeline_name) if r not in before]
    return new[-1] if new else None


def _write_report(config: PipelineConfig, summary: RunSummary) -> Path | None:
    """The run report next to the log; a failure to write it is logged, never raised."""
    from conveyor.local import report

    try:
        return report.write(config, summary)
    except Exception:  # the run's own outcome stands; the summary says the report is missing
        logging.exception("could not write the run report")
        return None
