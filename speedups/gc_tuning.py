"""Python's cyclic garbage collector, set for a process that loads TFX and runs pipelines.

Loading TFX, TensorFlow, TFMA and Beam leaves ~900,000 objects that live as long as the process.
With the default thresholds the collector walks all of them again and again: a cold run of the
10,000-trip span 1 spent 9.4 s in it (7.2 s in 13 full collections), and the interpreter's last
collection at exit took another ~6 s (figures: docs/benchmarks.md). So:

- `set_for_commands()`, when a `conveyor` command starts:
  - a young collection after 20,000 new objects instead of 700, so far fewer collections reach
    the old generation while the libraries load. Garbage cycles wait a little longer to be
    freed; reference counting frees everything else at once, as before.
  - at exit the heap is left out of the interpreter's last collection. Python never promised to
    finalise objects still alive at exit, and everything Conveyor writes is closed (or fsync'ed)
    before a command returns.
- `leave_loaded_out()`, around a pipeline run: what exists when the run starts (the libraries,
  earlier runs' survivors) is left out of the run's collections, and put back after it, so a
  later collection still frees whatever of it became garbage.

A speedup (speedups/__init__.py): off with CONVEYOR_SPEEDUPS=0, and on any interpreter but CPython
3.11 (the thresholds were measured there; 3.14's incremental collector reads them differently).
"""
from __future__ import annotations

import atexit
import contextlib
import gc
from typing import Iterator

from speedups import switch

YOUNG_THRESHOLD = 20_000  # new objects between young collections (Python's default: 700)


def set_for_commands() -> None:
    if not switch.allowed("gc_tuning"):
        return
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
    atexit.unregister(gc.freeze)  # registered once, however often a process calls this
    atexit.register(gc.freeze)  # atexit handlers run before the interpreter's last collection


@contextlib.contextmanager
def leave_loaded_out() -> Iterator[None]:
    if not switch.allowed("gc_tuning"):
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
