"""DataGate on hostile spans, through real pipeline runs and the installed `conveyor run`.

One home, continued from a copy of small_run's (span 1: 800 clean trips, validated and pushed),
default drift policy (warn):
  span 2  a header and no rows                         -> blocked: "span 2 has 0 rows"
  span 3  2,999 real trips + 1 with empty pickup fields -> passes: drift scored, trained
  span 4  trip_seconds empty in 62 % of 1,000 trips     -> blocked, with the share and the floor
  span 5  the header repeated on line 1001              -> blocked: "line 1001 repeats the header"
  span 6  trip_start_month = 1e308 on line 17           -> blocked, naming the value
  span 7  trip_seconds in milliseconds                  -> blocked as a broken feed, under warn
  span 8  1,000 real trips, fare and trip_miles swapped -> `conveyor run` blocks it, naming both columns
A fresh home whose first span is a 0-byte file goes through `.venv/bin/conveyor run` as a user's would.
`conveyor schema diff` on spans 5 and 7 says no schema change fixes what blocked them.
The rules themselves are unit-tested in tests/test_span_validation.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import markupsafe
import numpy as np
import pytest

from conveyor import analysis
from conveyor.local import runner as local_run
from data import generator, materialize, spans_io
from metadata import connection, runs
from models import features
from pipeline.validation import number, pct

DOWNSTREAM = {"Transform", "Trainer", "Evaluator", "InfraCheck", "Pusher"}
# The module fixture makes six pipeline runs (one trained) after small_run: give the first test's
# setup more than pytest.ini's 900 s on a busy machine.
pytestmark = pytest.mark.timeout(2400)


def _text_span(spans_root: Path, span: int, text: str) -> None:
    path = spans_io.span_dir(spans_root, span) / spans_io.SPAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _edit_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def gate_runs(small_run, shipped_rows, tmp_path_factory):
    small_config, _ = small_run
    base = tmp_path_factory.mktemp("data_gate")
    config = small_config.replace(home=base / "home", spans_root=base / "spans")
    shutil.copytree(small_config.home, config.home)  # MLMD copy; span 1's artifacts stay where small_run wrote them
    shutil.copytree(small_config.spans_root, config.spans_root)
    root = config.spans_root

    _text_span(root, 2, ",".join(features.active().csv_columns) + "\n")

    sample = spans_io.read_rows(materialize.shipped_csv(materialize.SHIPPED_SAMPLE))
    empty_pickup = next(r for r in sample if r["pickup_latitude"] == "")
    spans_io.write_span(root, 3, [empty_pickup] + shipped_rows[800:3799])

    spike = [dict(r) for r in shipped_rows[3800:4800]]
    for row in spike[:620]:
        row["trip_seconds"] = ""
    spans_io.write_span(root, 4, spike)

    repeated = spans_io.write_span(root, 5, shipped_rows[4800:6300])
    _edit_lines(repeated, lambda lines: lines.insert(1000, lines[0]))

    huge = [dict(r) for r in shipped_rows[6300:7300]]
    huge[15]["trip_start_month"] = "1e308"  # line 17
    spans_io.write_span(root, 6, huge, canonical=False)

    generator.write_generated_span(root, 7, generator.shipped_reference(), 1000, 11, "unit_change")

    summaries = {span: local_run.run(config.replace(span=span)) for span in range(2, 8)}
    return config, summaries, {"spike_empty": sum(r["trip_seconds"] == "" for r in spike)}


def _blocked(summary, first_line: str) -> None:
    assert not summary.ok and summary.failed_component == "DataGate"
    assert summary.error.splitlines()[0] == f"DataValidationError: {first_line}", summary.error
    assert not DOWNSTREAM & {name for name, _, _ in summary.timings}
    assert summary.pushed_path is None
    assert str(markupsafe.escape(first_line)) in summary.report_file.read_text(encoding="utf-8")  # as the report's templates escape


def test_a_header_only_span_is_blocked_with_its_row_count(gate_runs):
    _, summaries, _ = gate_runs
    _blocked(summaries[2], "span 2 blocked before training: span 2 has 0 rows (data.csv has a header and no rows)")


def test_one_real_row_with_empty_pickup_fields_passes_and_is_trained_on(gate_runs):
    config, summaries, _ = gate_runs
    summary = summaries[3]
    assert summary.ok, summary.error
    assert {"Transform", "Trainer", "Evaluator"} <= {name for name, _, _ in summary.timings}
    assert summary.window_spans == [3]  # span 2 was blocked
    assert summary.infra_checked == 32  # a client could not send the trip without pickup: not sampled
    assert summary.drift["baseline_span"] == 1 and summary.drift["scores"]  # drift scored
    pickup = next(f for f in summary.validation["features"] if f["feature"] == "pickup_latitude")
    assert summary.validation["rows"] == 3000 and (pickup["empty"], pickup["rows"]) == (1, 3000)
    # TFDV's statistics of what CsvExampleGen made of the span agree with DataGate's count
    store = connection.open_metadata(config)
    stats_artifact = runs.load_run(store, summary.run_id).output("StatisticsGen", "statistics")
    with_value = 0.0
    for split in analysis.split_names(stats_artifact):
        stats = analysis.load_statistics(stats_artifact, split)
        share = next(f.present for f in analysis.feature_summaries(stats) if f.feature == "pickup_latitude")
        with_value += share * analysis.num_examples(stats)
    assert round(with_value) == 2999
    page = summary.report_file.read_text(encoding="utf-8")
    assert "Completeness (DataGate)" in page and "1 of 3,000" in page


def test_a_spike_of_empty_cells_is_blocked_with_its_share_and_floor(gate_runs):
    _, summaries, facts = gate_runs
    empty = facts["spike_empty"]  # the 620 blanked and the span's own empty cells
    assert 620 <= empty < 630
    _blocked(
        summaries[4],
        f"span 4 blocked before training: trip_seconds is empty in {pct(empty / 1000)} of rows "
        f"({empty:,} of 1,000; floor: a value in 98.2 %)",
    )


def test_a_repeated_header_is_blocked_naming_its_line(gate_runs):
    _, summaries, _ = gate_runs
    summary = summaries[5]
    _blocked(summary, "span 5 blocked before training: line 1001 repeats the header (and 1 more problem below)")
    assert len(summary.error.splitlines()) == 3  # not one line per feature ExampleValidator flagged
    assert "because of the repeated header" in summary.error.splitlines()[2]


def test_an_out_of_range_value_is_named_with_its_value(gate_runs):
    _, summaries, _ = gate_runs
    _blocked(
        summaries[6],
        "span 6 blocked before training: trip_start_month = 1e308 on line 17 is outside the schema's range 1..12",
    )


def test_a_unit_change_is_blocked_as_a_broken_feed_under_the_warn_policy(gate_runs):
    config, summaries, _ = gate_runs
    assert config.drift_policy == "warn"
    summary = summaries[7]
    assert summary.error.startswith(
        "DataValidationError: span 7 blocked before training: trip_seconds looks like a broken feed (a unit change?)"
    )
    _blocked(summary, summary.error.splitlines()[0].removeprefix("DataValidationError: "))
    assert "span 3's" in summary.error  # compared with the last validated span (4 to 6 were blocked)


def _fare_per_mile(rows: list[dict[str, str]]) -> float:
    return float(np.median([float(r["fare"]) / float(r["trip_miles"]) for r in rows
                            if r["fare"] and r["trip_miles"] and float(r["trip_miles"]) > 0]))


def test_a_passing_span_records_its_plausibility_measures(gate_runs):
    config, summaries, _ = gate_runs
    measures = summaries[3].validation["plausibility"]
    assert set(measures) == {rule.name for rule in features.active().plausibility}
    span_3 = spans_io.read_rows(spans_io.span_dir(config.spans_root, 3) / spans_io.SPAN_FILE)
    assert measures["fare_per_mile"] == pytest.approx(_fare_per_mile(span_3))


def _conveyor_run(home: Path, spans_root: Path, span: int) -> subprocess.CompletedProcess:
    conveyor = Path(sys.executable).parent / "conveyor"
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [str(conveyor), "run", "--home", str(home), "--spans-root", str(spans_root), "--span", str(span)],
        capture_output=True, text=True, env=env, timeout=900,
    )


def test_fare_and_trip_miles_swapped_stop_conveyor_run_before_the_trainer(gate_runs, shipped_rows):
    """Issue 33's named case under the default policy warn: drift alone would only warn."""
    config, _, _ = gate_runs
    swapped = [dict(r) for r in shipped_rows[7300:8300]]
    for row in swapped:
        row["fare"], row["trip_miles"] = row["trip_miles"], row["fare"]
    spans_io.write_span(config.spans_root, 8, swapped)
    pushed = sorted(p.name for p in config.serving_root.iterdir())
    done = _conveyor_run(config.home, config.spans_root, 8)
    assert done.returncode == 1, done.stdout + done.stderr
    span_3 = spans_io.read_rows(spans_io.span_dir(config.spans_root, 3) / spans_io.SPAN_FILE)
    assert (
        "FAILED in DataGate: DataValidationError: span 8 blocked before training: fare and trip_miles look swapped or "
        f"re-mapped: fare per mile has a median of {number(_fare_per_mile(swapped))} in span 8 against "
        f"{number(_fare_per_mile(span_3))} in span 3 (band 1-100); blocked under every drift policy\n"
    ) in done.stdout
    assert "pushed: nothing" in done.stdout and "Trainer" not in done.stdout and "Traceback" not in done.stderr
    assert sorted(p.name for p in config.serving_root.iterdir()) == pushed


@pytest.mark.parametrize(("span", "cause"), [
    (7, "trip_seconds: BROKEN_FEED: trip_seconds looks like a broken feed (a unit change?)"),
    (5, "span: HEADER_REPEATED: line 1001 repeats the header"),
])
def test_schema_diff_says_a_span_blocked_by_something_else_is_not_a_schema_matter(gate_runs, span, cause):
    config, _, _ = gate_runs
    conveyor = Path(sys.executable).parent / "conveyor"
    done = subprocess.run([str(conveyor), "schema", "diff", "--span", str(span), "--home", str(config.home)],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"conveyor schema diff: --span {span}: not blocked by the schema but by what no schema change fixes: {cause}")
    assert len(done.stderr.splitlines()) == 1 and not (config.home / "schema").exists()


def test_an_empty_first_span_is_blocked_by_the_installed_command(tmp_path):
    spans_root = tmp_path / "spans"
    _text_span(spans_root, 1, "")
    done = _conveyor_run(tmp_path / "home", spans_root, 1)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "FAILED in DataGate: DataValidationError: span 1 blocked before training: "
        "span 1 has 0 rows (data.csv is empty (0 bytes))"
    ) in done.stdout
    assert "pushed: nothing" in done.stdout and "Transform" not in done.stdout
    assert "threshold metrics missing" not in done.stdout
