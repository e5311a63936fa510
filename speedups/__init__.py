"""Every mechanism that leans on a library's internals for speed, behind one switch.

| mechanism | what it changes | leans on | tested on |
|---|---|---|---|
| `deferred_imports` | `tfx.v1.extensions` loads on first use (2.8 s of every command) | how `tfx.v1` imports its packages | tfx 1.21.0 |
| `gc_tuning` | fewer cyclic collections while the libraries load and a run goes | the collector's thresholds | CPython 3.11 |
| `beam_memos` | Beam's DoFn introspection and options views answered once (~11 % of a run) | `apache_beam` private functions and fields | apache-beam 2.77.0 |
| `folded_call` | the model call as one folded graph in the calling thread (0.2 ms a call) | TensorFlow's converter and eager internals | tensorflow 2.21.0 |
| `memory_statistics` | the card's TFDV statistics without a Beam pipeline | TFDV's `stats_impl` | tensorflow-data-validation 1.21.0 |

Each mechanism asks `switch.allowed(name, package, tested)` before it changes anything: with
`CONVEYOR_SPEEDUPS=0` (or `false`, `no`, `off`) every one is off, and where the installed library
is not the version it was tested on it stays off too, with one log line saying why. Off, the
product does exactly what the libraries do on their own; the answers are the same either way
(tests/test_speedups.py runs a small pipeline both ways and compares the models).

Nothing here is installed by importing it: the entry points call `for_commands()` and the local
runner `for_runs()`. This package imports nothing from the project (it sits below every layer).
"""
from __future__ import annotations


def for_commands() -> None:
    """What every `conveyor` process gets before it imports TFX: the deferred extensions and the collector's setting."""
    from speedups import deferred_imports, gc_tuning

    deferred_imports.defer_extensions()
    gc_tuning.set_for_commands()


def for_runs() -> None:
    """What a process that runs pipelines gets on top: Beam's memoised introspection."""
    from speedups import beam_memos

    beam_memos.install()
