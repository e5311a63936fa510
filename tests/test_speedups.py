"""The speedups' one switch (speedups/switch.py): nothing acts on import, CONVEYOR_SPEEDUPS=0 turns
every mechanism off, and a library at a version a mechanism was not tested on makes it a logged
no-op, never an exception. (That the model is the same either way: tests/test_reproducibility.py.)

Each case runs in a fresh interpreter: the mechanisms act on process-wide state (sys.modules, the
collector, Beam's module functions).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from speedups import switch

# What each mechanism changes, as one line of output: "changed" or "unchanged".
PROBES = {
    "deferred_imports": (
        "from speedups import deferred_imports\n"
        "deferred_imports.defer_extensions()\n"
        "print('changed' if 'tfx.v1.extensions' in sys.modules else 'unchanged')\n"
    ),
    "gc_tuning": (
        "import gc\n"
        "from speedups import gc_tuning\n"
        "gc_tuning.set_for_commands()\n"
        "print('changed' if gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD else 'unchanged')\n"
    ),
    "beam_memos": (
        "from apache_beam.transforms import core\n"
        "before = core.get_function_args_defaults\n"
        "from speedups import beam_memos\n"
        "beam_memos.install()\n"
        "print('unchanged' if core.get_function_args_defaults is before else 'changed')\n"
    ),
    "folded_call": (
        "import tensorflow as tf\n"
        "from speedups import folded_call\n"
        "call = tf.function(lambda x: {'y': x * 2.0}).get_concrete_function(tf.TensorSpec([None], tf.float32))\n"
        "print('unchanged' if folded_call.folded(call, [tf.constant([1.0, 2.0])]) is None else 'changed')\n"
    ),
    "memory_statistics": (
        "import pyarrow as pa, tensorflow_data_validation as tfdv\n"
        "from speedups import memory_statistics\n"
        "batch = pa.RecordBatch.from_arrays([pa.array([[1.0], [2.0]], pa.list_(pa.float32()))], ['x'])\n"
        "print('unchanged' if memory_statistics.generate(batch, tfdv.StatsOptions()) is None else 'changed')\n"
    ),
}


def _probe(name: str, env: dict[str, str], tested: str | None = None) -> tuple[str, str]:
    """Run `name`'s probe; `tested` replaces the version the mechanism was tested on.
    Returns stdout's last line and what the switch logged (TensorFlow's own start-up lines left out)."""
    pretend = "" if tested is None else f"switch.TESTED_ON[{name!r}] = (switch.TESTED_ON[{name!r}][0], {tested!r})\n"
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(message)s')\n"
        f"from speedups import switch\n{pretend}{PROBES[name]}"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1], "".join(line + "\n" for line in done.stderr.splitlines() if line.startswith("speedup "))


@pytest.mark.parametrize("name", sorted(PROBES))
def test_each_mechanism_acts_only_with_the_switch_on_and_the_tested_version(name):
    on = {switch.SWITCH: "1"}
    assert _probe(name, on) == ("changed", "")
    assert _probe(name, {switch.SWITCH: "0"}) == ("unchanged", f"speedup {name} is off: {switch.SWITCH} is off\n")
    package, _ = switch.TESTED_ON[name]
    found = switch.installed_version(package)
    assert _probe(name, on, tested="0.0.1") == ("unchanged", f"speedup {name} is off: {package} {found} is not the tested 0.0.1\n")


def test_importing_the_project_installs_nothing():
    script = (
        "import gc, sys\n"
        "young = gc.get_threshold()[0]\n"
        "import conveyor, conveyor.cli, conveyor.local.runner, speedups, models.saved_model, pipeline.pipeline\n"
        "from apache_beam.transforms import core\n"
        "print(gc.get_threshold()[0] == young, 'google.cloud.aiplatform' in sys.modules,\n"
        "      core.get_function_args_defaults.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.split() == ["True", "True", "apache_beam.transforms.core"]  # TFX loaded its cloud clients itself


def test_a_switch_value_that_is_neither_on_nor_off_is_one_line_naming_the_variable(tmp_path):
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "conveyor"), "models", "--home", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, switch.SWITCH: "maybe"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "conveyor: CONVEYOR_SPEEDUPS='maybe': expected 1 or 0 (also true/false, yes/no, on/off)\n"


def test_the_run_log_says_which_speedups_acted():
    assert switch.describe().startswith("speedups: deferred_imports ")
    assert [part.split()[0] for part in switch.describe().removeprefix("speedups: ").split("; ")] == list(switch.TESTED_ON)
