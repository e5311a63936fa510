"""Beam's repeated introspection, answered once (speedups/beam_memos.py): the same answers as Beam's own.

The wrappers are checked here on Beam's own functions; `install()` only in a fresh interpreter, so
this test process keeps Beam as it is.
"""
from __future__ import annotations

import functools
import subprocess
import sys

import apache_beam as beam
from apache_beam.options import pipeline_options as po
from apache_beam.transforms import core, userstate

from speedups import beam_memos

COUNTS = userstate.BagStateSpec("counts", beam.coders.VarIntCoder())
FLUSH = userstate.TimerSpec("flush", userstate.TimeDomain.WATERMARK)


class _Stateful(beam.DoFn):
    def process(self, element, counts=beam.DoFn.StateParam(COUNTS), flush=beam.DoFn.TimerParam(FLUSH),
                timestamp=beam.DoFn.TimestampParam):
        yield element

    @userstate.on_timer(FLUSH)
    def on_flush(self, counts=beam.DoFn.StateParam(COUNTS)):
        yield 0

    @classmethod
    def make(cls, value=3):
        return cls()


def _plain(a, b=1, *rest, c=2, **more):
    return a


def _counting(original):
    calls = []

    def counted(f):
        calls.append(f)
        return original(f)

    return counted, calls


def test_argument_answers_are_beams_own_and_asked_once_per_function():
    counted, calls = _counting(core.get_function_args_defaults)
    memoised = beam_memos._per_function(counted)
    one, two = _Stateful(), _Stateful()
    callables = [one.process, two.process, one.on_flush, _Stateful.make, _plain, lambda x, y=5: x,
                 functools.partial(_plain, 1), len, _Stateful.process]
    for f in callables * 3:
        assert memoised(f) == core.get_function_args_defaults(f), f
    # Plain functions and their methods once each (the two instances' process shares its function,
    # the unbound _Stateful.process is asked apart from them); the partial and the builtin every time.
    asked = [f for f in calls if not isinstance(f, functools.partial) and f is not len]
    assert len(asked) == 6
    assert sum(1 for f in calls if f is len) == 3


def test_each_caller_gets_its_own_lists():
    memoised = beam_memos._per_function(core.get_function_args_defaults)
    args, defaults = memoised(_plain)
    args.append("changed")
    defaults.clear()
    assert memoised(_plain) == (["a", "b"], [1])


def test_state_and_timer_specs_are_still_found_with_the_memo():
    saved = core.get_function_args_defaults
    core.get_function_args_defaults = beam_memos._per_function(saved)
    try:
        for _ in range(2):  # the second time from the memo
            assert userstate.get_dofn_specs(_Stateful()) == ({COUNTS}, {FLUSH})
            assert userstate.is_stateful_dofn(_Stateful())
    finally:
        core.get_function_args_defaults = saved


FLAGS = ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--experiments=a"]
VIEWS = [po.StandardOptions, po.TypeOptions, po.DirectOptions, po.DebugOptions, po.SetupOptions]


def _values(view) -> dict:
    return {name: getattr(view, name) for name in view._visible_option_list()}


def test_a_kept_view_reads_and_writes_what_a_new_view_would():
    view_as = beam_memos._per_options_object(po.PipelineOptions.view_as)
    kept, fresh = po.PipelineOptions(FLAGS), po.PipelineOptions(FLAGS)
    for cls in VIEWS * 2:
        view = view_as(kept, cls)
        assert type(view) is cls
        assert _values(view) == _values(fresh.view_as(cls))
    assert kept.get_all_options() == fresh.get_all_options()
    assert view_as(kept, po.TypeOptions) is view_as(kept, po.TypeOptions)

    view_as(kept, po.StandardOptions).streaming = True  # a write through one view ...
    assert view_as(kept, po.StandardOptions).streaming is True  # ... is read through the next
    view_as(kept, po.DebugOptions).add_experiment("b")
    assert view_as(kept, po.DebugOptions).experiments == ["a", "b"]
    assert kept.get_all_options()["experiments"] == ["a", "b"]


def test_a_view_follows_new_flags_a_new_dict_and_restores_unset_defaults():
    view_as = beam_memos._per_options_object(po.PipelineOptions.view_as)
    options = po.PipelineOptions(FLAGS)
    first = view_as(options, po.DirectOptions)
    assert view_as(options, po.DirectOptions) is first
    del options._all_options["direct_num_workers"]  # view_as adds the class's defaults where unset
    assert view_as(options, po.DirectOptions) is first
    assert options._all_options["direct_num_workers"] == po.PipelineOptions(FLAGS).view_as(po.DirectOptions).direct_num_workers

    options._all_options = dict(options._all_options)
    second = view_as(options, po.DirectOptions)
    assert second is not first and second._all_options is options._all_options
    options._flags = ["--direct_running_mode=multi_processing"]
    assert view_as(options, po.DirectOptions) is not second
    other = po.PipelineOptions(["--direct_running_mode=multi_threading"])
    assert view_as(other, po.DirectOptions).direct_running_mode == "multi_threading"


def test_installed_once_and_a_stateful_pipeline_runs_with_it():
    script = """
import apache_beam as beam
from apache_beam.options import pipeline_options as po
from apache_beam.transforms import core, userstate
from speedups import beam_memos

beam_memos.install()
beam_memos.install()
assert core.get_function_args_defaults.__wrapped__.__module__ == "apache_beam.transforms.core"
assert po.PipelineOptions.view_as.__wrapped__.__module__ == "apache_beam.options.pipeline_options"

TOTAL = userstate.CombiningValueStateSpec("total", sum)

class Running(beam.DoFn):
    def process(self, element, total=beam.DoFn.StateParam(TOTAL)):
        total.add(element[1])
        yield element[0], total.read()

options = po.PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])
with beam.Pipeline(options=options) as p:
    out = (p | beam.Create([("a", 1), ("a", 2), ("b", 5)]) | beam.ParDo(Running())
             | beam.combiners.ToList() | beam.Map(lambda xs: print(sorted(xs))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "[('a', 1), ('a', 3), ('b', 5)]"
