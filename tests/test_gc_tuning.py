"""The garbage collector's settings for commands and pipeline runs (speedups/gc_tuning.py)."""
from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from speedups import gc_tuning


class _Node:
    pass


def _cycle() -> weakref.ref:
    """A garbage cycle only the collector can free; the weak reference tells when it is freed."""
    node = _Node()
    node.self = node
    return weakref.ref(node)


def test_a_run_leaves_what_existed_out_of_its_collections_and_puts_it_back():
    before = _cycle()
    with gc_tuning.leave_loaded_out():
        during = _cycle()
        gc.collect()
        assert before() is not None, "what existed when the run started was collected during it"
        assert during() is None, "the run's own garbage must be collected as usual"
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before() is None, "after the run, what it left out must be collectable again"


def test_a_command_collects_less_often_and_leaves_the_heap_out_of_the_exit_collection():
    # A handler registered before set_for_commands runs after its own (atexit is last in, first out).
    script = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "from speedups import gc_tuning\n"
        "gc_tuning.set_for_commands()\n"
        "gc_tuning.set_for_commands()\n"
        "print('young threshold:', gc.get_threshold()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == [f"young threshold: {gc_tuning.YOUNG_THRESHOLD}", "frozen at exit: True"]
