"""Beam's two most repeated questions while it builds and translates a pipeline, answered once.

Profiled on one `conveyor run` of the template's 15,000 trips (py-spy, docs/benchmarks.md), ~11 %
of the whole process went to two questions that Beam asks again and again with the same inputs:

- the argument names and defaults of a DoFn method (`core.get_function_args_defaults`, through
  `inspect.signature`): for every method of every DoFn, each time a ParDo is made, translated to
  its runner form, checked for state and timers, or set up for a bundle (~6 % of the run);
- a view of the pipeline options as one options class (`PipelineOptions.view_as`), which builds
  and runs an argparse parser of that class's flags each time (~5 %).

Each answer depends only on its inputs, so `install()` keeps it:

- argument names and defaults per Python function (for a bound method, per its function: binding
  only drops the first argument, whatever the instance). Anything that is not a plain function or
  a method of one (a builtin, a partial, a callable object) is asked as before. A function's
  defaults are read when it is first asked about; Beam's DoFns never reassign them.
- a view per options object and class. A view holds nothing of its own: it reads and writes the
  options object's `_all_options` dict, so the kept view behaves as a new one would, as long as
  that object still has the same flags and dict (checked on every call; otherwise a new view is
  made). Each call still adds the class's defaults for options the object has not set, as
  `view_as` does.

Both are installed by the local runner (conveyor/local/runner.py, through `speedups.for_runs()`)
in the process that runs the pipeline; the answers Beam gets are the same (tests/test_beam_memos.py).
A speedup (speedups/__init__.py): off with CONVEYOR_SPEEDUPS=0 or another Beam than the one it was tested on.
"""
from __future__ import annotations

import functools
import threading
import types
import weakref
from typing import Any, Callable

from speedups import switch

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Memoise both questions in this process (idempotent; a no-op when the speedup is off)."""
    global _installed
    if not switch.allowed("beam_memos"):
        return
    from apache_beam.options import pipeline_options
    from apache_beam.transforms import core

    with _lock:
        if _installed:
            return
        core.get_function_args_defaults = _per_function(core.get_function_args_defaults)
        view_as = _per_options_object(pipeline_options.PipelineOptions.view_as)
        pipeline_options.PipelineOptions.view_as = view_as  # type: ignore[method-assign]
        _installed = True


def _per_function(args_defaults: Callable[[Any], tuple[list[str], list[Any]]]) -> Callable:
    known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> {bound: answer}

    @functools.wraps(args_defaults)
    def memoised(f: Any) -> tuple[list[str], list[Any]]:
        bound = isinstance(f, types.MethodType)
        function = f.__func__ if bound else f
        if not isinstance(function, types.FunctionType):
            return args_defaults(f)
        with _lock:
            answer = known.get(function, {}).get(bound)
        if answer is None:
            answer = args_defaults(f)
            with _lock:
                known.setdefault(function, {})[bound] = answer
        args, defaults = answer
        return list(args), list(defaults)  # callers get their own lists, as before

    return memoised


def _per_options_object(view_as: Callable[[Any, type], Any]) -> Callable:
    views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # options -> {cls: (flags, view)}

    @functools.wraps(view_as)
    def memoised(self: Any, cls: type) -> Any:
        flags, options = self._flags, self._all_options
        with _lock:
            flags_then, view = views.get(self, {}).get(cls, (None, None))
        if view is None or flags_then is not flags or view._all_options is not options:
            view = view_as(self, cls)
            with _lock:
                views.setdefault(self, {})[cls] = (flags, view)
            return view
        for name in view._visible_option_list():  # what view_as adds: the class's defaults, where unset
            if name not in options:
                options[name] = getattr(view._visible_options, name)
        return view

    return memoised
