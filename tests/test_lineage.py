"""`conveyor lineage`: the chain behind the pushed model of a real run (the shared `small_run`), and
why it was blessed, through the installed command, on that run and on a second run judged
against it (`compared_run`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conveyor import cli
from data import spans_io
from metadata import lineage
from pipeline import evaluation, user_code, versions
from pipeline.thresholds import Threshold
from tests.conftest import SMALL_SPAN_ROWS, built_once
from tests.serving_helpers import CONVEYOR

# The second run gates no slice (each is far below this) and lets every slice drop "fail" TFMA's
# check, so every slice that got worse is listed as not gated with its change; overall it only
# needs its floors, so it is blessed and pushed.
UNGATED = 100_000


@pytest.fixture(scope="module")
def traced(small_run):
    config, summary = small_run
    return config, summary, lineage.for_config(config)


def _lineage(home: Path, *args: str) -> str:
    """`conveyor lineage` as the README runs it: the installed command, in its own process."""
    done = subprocess.run([str(CONVEYOR), "lineage", "--home", str(home), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def _slices(out: str) -> list[str]:
    """The slice names of the evaluation's table, in the order printed."""
    return re.findall(r"^ {12}(overall|\w+=.+?)\s{2,}\d+\s", out, re.M)


@pytest.fixture(scope="module")
def compared_run(small_run, shipped_rows, tmp_path_factory):
    """small_run's home plus a run of span 2 judged against small_run's version (see UNGATED).
    Returns (config, summary, the baseline version)."""
    small_config, _ = small_run
    baseline = versions.serving_version(small_config.serving_root)

    def build(base: Path):
        thresholds = tuple(Threshold(m, 0.5, max_drop=1.0, slice_max_drop=0.0) for m in ("binary_accuracy", "auc"))
        config = small_config.replace(
            home=base / "home", spans_root=base / "spans", span=2, thresholds=thresholds, min_slice_examples=UNGATED,
            fairness_min_examples=UNGATED,
        )
        shutil.copytree(small_config.home, config.home)
        shutil.copytree(small_config.spans_root, config.spans_root)
        spans_io.write_span(config.spans_root, 2, shipped_rows[SMALL_SPAN_ROWS : 2 * SMALL_SPAN_ROWS])
        from conveyor.local import runner as local_run

        summary = local_run.run(config)
        assert summary.ok and summary.pushed_path, summary.error
        return config, summary

    config, summary = built_once(tmp_path_factory, "compared_run", build)
    return config, summary, baseline


def test_the_default_version_is_the_one_serving_now(traced):
    config, summary, found = traced
    assert found.serving_now and found.version == versions.serving_version(config.serving_root_uri)
    assert found.pushed_path == summary.pushed_path
    assert found.run_id == summary.run_id


def test_data_spans_files_statistics_anomalies_and_gate(traced):
    config, _, found = traced
    (span,) = found.spans
    assert span.span == 1
    assert span.data_files == [str(config.spans_root / "span-1" / "data.csv")]
    assert "num_files:1" in span.input_fingerprint
    assert span.anomalies == []
    assert "/StatisticsGen/statistics/" in span.statistics_uri
    assert "/DataGate/validated_examples/" in span.validated_uri


def test_schema_transform_and_trainer_with_steps_config_and_code(traced):
    config, _, found = traced
    assert found.schema_file == str(config.schema_path)
    assert "/Transform/transform_graph/" in found.transform_graph_uri
    assert (found.train_steps, found.eval_steps) == (config.train_steps, config.eval_steps)
    # The installed form (the default): the function by module path and a fingerprint of models/.
    assert found.custom_config == {**config.trainer_config(), user_code.CODE_VERSION_KEY: user_code.fingerprint()}
    assert found.trainer_code == f"{user_code.RUN_FN} (installed, code {user_code.fingerprint()})"


def test_evaluation_metrics_and_blessing_match_the_run(traced):
    _, summary, found = traced
    assert found.metrics == summary.evaluation.metrics["overall"]
    assert json.dumps(found.evaluation.metrics, sort_keys=True) == json.dumps(summary.evaluation.metrics, sort_keys=True)  # NaN-aware
    assert found.blessed and found.baseline is None and found.baseline_version is None
    assert found.infra is not None and found.infra.passed and found.infra.checked == summary.infra_checked


def test_the_command_prints_the_chain(small_run, capsys):
    config, summary = small_run
    assert cli.main(["lineage", "--home", str(config.home)]) == 0
    out = capsys.readouterr().out
    version = summary.pushed_path.rsplit("/", 1)[-1]
    assert out.startswith(f"model version {version} (serving now)\n")
    for line in ("data: training window spans [1]\n", "launched by: a person (conveyor run), not the CT controller",
                 "data gate  passed", "steps train 100, eval 5", "blessed yes"):
        assert line in out


def test_the_installed_command_says_why_a_first_model_was_blessed(small_run):
    config, summary = small_run
    out = _lineage(config.home)
    overall = summary.evaluation.metrics["overall"]
    # Counts as integers, the other metrics with 4 decimals.
    assert re.search(rf"^ +overall  binary_accuracy={overall['binary_accuracy']:.4f}, .*, example_count={overall['example_count']:.0f}, "
                     rf"true_positives=\d+, false_negatives=\d+$", out, re.M), out
    assert "baseline none: nothing was serving" in out
    # The verdict with its figures: each floor met; without a baseline only the floors apply.
    assert "blessed yes: every gated threshold met\n" in out
    assert f"overall binary_accuracy {overall['binary_accuracy']:.4f} >= floor 0.7\n" in out
    assert f"overall auc {overall['auc']:.4f} >= floor 0.7\n" in out
    assert "no baseline (nothing was serving): only the floors apply" in out
    assert f"infra check: passed, {summary.infra_checked} eval examples answered through the serving code" in out
    # Every slice of the evaluation, in natural order: hour 4 before hour 13.
    slices = _slices(out)
    assert sorted(slices) == sorted(summary.evaluation.metrics)
    hours = [int(name.split("=")[1]) for name in slices if name.startswith("trip_start_hour=")]
    assert hours == sorted(hours) and hours != sorted(hours, key=str)
    assert slices[0] == "overall" and slices.index("trip_start_hour=0") > max(i for i, s in enumerate(slices) if s.startswith("payment_type="))
    # AUC is undefined on the cash slice (no big tip is recorded in cash): n/a, not TFMA's 0.0.
    assert re.search(r"^ {12}payment_type=Cash +\d+ +1\.0000 +n/a \(one class\)$", out, re.M), out


def test_the_installed_command_names_the_baseline_version_and_the_change_of_slices_not_gated(compared_run):
    config, summary, baseline = compared_run
    out = _lineage(config.home)
    assert re.search(rf"^ +baseline version {baseline} \(model \S+/Trainer/model/\d+\): binary_accuracy=0\.\d{{4}}, ", out, re.M), out
    # Not gated (every slice here), each with the change it saw, in natural slice order.
    notes = re.findall(rf"^ +- (\S+=[^:]+): not gated \((\d+) eval examples < {UNGATED}\): (.*)$", out, re.M)
    assert notes and len(notes) == len(summary.evaluation.not_gated)
    for name, count, seen in notes:
        assert int(count) == summary.evaluation.metrics[name]["example_count"]
        for metric, candidate, base, change in re.findall(r"(\w+) (\d\.\d{3}) vs (\d\.\d{3}) \((-\d\.\d{3})\)", seen):
            assert f"{summary.evaluation.metrics[name][metric]:.3f}" == candidate
            assert f"{summary.evaluation.baseline_by_slice[name][metric]:.3f}" == base
            assert float(change) < 0
        assert re.fullmatch(r"\w+ \d\.\d{3} vs \d\.\d{3} \(-\d\.\d{3}\)(, \w+ \d\.\d{3} vs \d\.\d{3} \(-\d\.\d{3}\))?", seen), seen
    names = [name for name, _, _ in notes]
    assert names == sorted(names, key=evaluation.slice_order)
    # The verdict's figures against the baseline; no slice was big enough to gate.
    accuracy = summary.evaluation.metrics["overall"]["binary_accuracy"]
    base_accuracy = summary.evaluation.baseline["binary_accuracy"]
    assert (f"overall binary_accuracy {accuracy:.4f} >= floor 0.5; {accuracy - base_accuracy:+.4f} against the baseline's "
            f"{base_accuracy:.4f} (a drop of at most 1 allowed)") in out
    assert re.search(r"slices  binary_accuracy: none of \d+ slices gated", out)


def test_the_run_summary_names_the_baseline_version_and_explains_the_verdict_like_lineage(compared_run):
    from conveyor.local import run_summary

    config, summary, baseline = compared_run
    text = run_summary.format_summary(summary)
    assert f"\nbaseline: version {baseline}, overall: auc=" in text
    assert "\nblessed: yes, every gated threshold met\n  overall binary_accuracy " in text
    assert "  slices  binary_accuracy: none of " in text
    notes = [line[4:] for line in text.splitlines() if line.startswith("  - ") and ": not gated (" in line]
    assert notes == summary.evaluation.not_gated and notes == sorted(notes, key=lambda n: evaluation.slice_order(n.split(":")[0]))
    table = [line.split()[0] for line in text.splitlines() if line.startswith("trip_start_hour=")]
    assert table == sorted(table, key=evaluation.slice_order) != sorted(table)
    printed = _lineage(config.home)  # lineage of the same evaluation: the same not-gated lines
    assert all(f"  - {note}\n" in printed for note in notes)


def test_an_evaluation_without_its_record_is_read_through_tfma_to_the_same_lines(compared_run):
    # Evaluations made before the Evaluator wrote slice_metrics.json: the same figures, the slow way.
    config, _, _ = compared_run
    recorded = Path(lineage.for_config(config).evaluation_uri, evaluation.SLICE_METRICS_FILE)
    fast = _lineage(config.home)
    hidden = recorded.with_name("hidden-" + recorded.name)
    os.rename(recorded, hidden)
    try:
        slow = _lineage(config.home)
    finally:
        os.rename(hidden, recorded)
    assert slow == fast


def test_an_unknown_version_is_a_clear_error(small_run, capsys):
    config, _ = small_run
    assert cli.main(["lineage", "--home", str(config.home), "--version", "123"]) == 1
    assert f"no push to {config.serving_root_uri}/123 is recorded in ML Metadata" in capsys.readouterr().err
