"""Run one pipeline process and record what it cost, component by component.

    python -m benchmarks.timed_run OUT.json conveyor ARGS...     the `conveyor` command (cli.main)
    python -m benchmarks.timed_run OUT.json script PATH ARGS...  a runner script (the TFX template's,
                                                                 run with its folder as the cwd)

The benchmarks start every measured pipeline through this module, so Conveyor and the official
template are timed by the same code. It listens to the log lines TFX's LocalDagRunner writes for
each component (the ones the progress lines use) and writes OUT.json at exit:
  components   [[node id, ran/cached/resolved, wall seconds, CPU seconds], ...] in order, every run
  runs         per Conveyor pipeline pass (conveyor.local.runner.run): seconds (wall, read-back and
               report included; `conveyor run` loads TFX before its first pass), ok, span, window,
               components (how many entries of `components` are this run's), binary_accuracy
  first_component  seconds from this module's start to the first component starting
  cpu          CPU seconds of the process (user + system); children_cpu, of its reaped children
  peak_rss_mb  the process's peak resident memory; children_peak_rss_mb, the largest child's
"""
from __future__ import annotations

import json
import logging
import resource
import runpy
import sys
import time

from conveyor.local.progress import ComponentProgress

_STARTED = time.monotonic()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CostRecorder(ComponentProgress):
    """ComponentProgress that also records the process CPU time each component used."""

    def __init__(self) -> None:
        super().__init__(emit_line=lambda line: None)
        self.first_component: float | None = None
        self.cpu: list[float] = []
        self._cpu_started = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Component %s is running.":
            self._cpu_started = _cpu()
            if self.first_component is None:
                self.first_component = time.monotonic()
        done = len(self.timings)
        super().emit(record)
        if len(self.timings) > done:
            self.cpu.append(_cpu() - self._cpu_started)


def _record_runs(recorder: CostRecorder, runs: list[dict]) -> None:
    """Wrap conveyor.local.runner.run (which `conveyor run` calls once per span) to note each pass."""
    from conveyor.local import runner as local_run

    run = local_run.run

    def recorded(*args, **kwargs):
        started, done = time.monotonic(), len(recorder.timings)
        summary = run(*args, **kwargs)
        overall = summary.evaluation.metrics.get("overall", {}) if summary.evaluation else {}
        runs.append(
            {
                "seconds": time.monotonic() - started,
                "ok": summary.ok,
                "error": summary.error,
                "span": summary.span,
                "window": summary.window_spans,
                "components": len(recorder.timings) - done,
                "binary_accuracy": overall.get("binary_accuracy"),
            }
        )
        return summary

    local_run.run = recorded


def main(argv: list[str]) -> int:
    out, kind, *args = argv
    recorder = CostRecorder()
    # On the absl logger, not the root logger: `conveyor run` swaps the root handlers for its run.
    logging.getLogger("absl").addHandler(recorder)
    runs: list[dict] = []
    code = 0
    try:
        if kind == "conveyor":
            from conveyor import cli

            _record_runs(recorder, runs)
            code = cli.main(args)
        else:
            sys.argv = list(args)  # run from its own folder (the caller's cwd), which imports first
            runpy.run_path(args[0], run_name="__main__")
    finally:
        ended = time.monotonic()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = {
            "components": [[n, s, w, c] for (n, s, w), c in zip(recorder.timings, recorder.cpu)],
            "runs": runs,
            "first_component": (recorder.first_component or ended) - _STARTED,
            "cpu": _cpu(),
            "children_cpu": children.ru_utime + children.ru_stime,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_peak_rss_mb": children.ru_maxrss / 1024,
        }
        with open(out, "w") as handle:
            json.dump(result, handle)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
