"""DataGate's span rules without a pipeline: the CSV audit, the completeness floors and the sentences.

The pipeline runs that drive the same rules through DataGate are in tests/test_data_gate.py.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from data import generator, materialize, span_audit, spans_io
from data.span_audit import EMPTY, INVALID, OK, OUT_OF_DOMAIN, Domain
from models import features
from pipeline import validation
from pipeline.anomalies import Anomaly
from pipeline.configs import PipelineConfig
from schema import derive
from tests.tft_helpers import load_schema

CONFIG = PipelineConfig()


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.fixture(scope="module")
def rules():
    return derive.load_completeness(CONFIG.completeness_path)


@pytest.fixture(scope="module")
def rows_with_empty_pickup() -> list[dict[str, str]]:
    """Real trips of the shipped sample whose pickup fields are empty."""
    sample = spans_io.read_rows(materialize.shipped_csv(materialize.SHIPPED_SAMPLE))
    found = [r for r in sample if r["pickup_latitude"] == ""]
    assert len(found) == 2 and all(r["pickup_longitude"] == r["pickup_community_area"] == "" for r in found)
    return found


def _audit(paths: list[Path], schema) -> span_audit.SpanAudit:
    return span_audit.audit([str(p) for p in paths], lambda name: open(name, "rb"), validation.domains(schema))


def _span(tmp_path: Path, rows: list[dict], span: int = 7) -> Path:
    return spans_io.write_span(tmp_path, span, rows)


def _edit_lines(path: Path, edit) -> Path:
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _check(span_audit_, schema, rules, previous=None, current=None, anomalies=(), examples_read=None):
    return validation.check(
        7,
        span_audit_,
        examples_read=span_audit_.rows if examples_read is None else examples_read,
        anomalies=list(anomalies),
        completeness=rules,
        schema=schema,
        current=current,
        previous=previous,
        min_rows_ratio=CONFIG.min_rows_ratio,
        broken_feed_factor=CONFIG.broken_feed_factor,
        broken_meaning_jsd=CONFIG.broken_meaning_jsd,
        drift_features=CONFIG.drift_thresholds,
    )


# ------------------------------------------------------------------------------------ the audit


def test_cells_are_judged_by_the_contract_type_and_the_domain():
    month = Domain(1, 12)
    assert [span_audit.judge("INT", month, t) for t in ("7", "", "13", "1e308", "5.0", "five")] == [
        OK, EMPTY, OUT_OF_DOMAIN, OUT_OF_DOMAIN, INVALID, INVALID
    ]
    assert [span_audit.judge("INT", None, t) for t in ("180", "180 sec", "-3", str(2**63))] == [OK, INVALID, OK, INVALID]
    assert [span_audit.judge("FLOAT", Domain(0.0), t) for t in ("1.5", "2", "-0.5", "nan", "inf", "1e39")] == [
        OK, OK, OUT_OF_DOMAIN, INVALID, INVALID, INVALID
    ]
    cash = Domain(values=frozenset({"Cash"}))
    assert [span_audit.judge("BYTES", cash, t) for t in ("Cash", "Bitcoin", "")] == [OK, OUT_OF_DOMAIN, EMPTY]


def test_audit_counts_every_cell_and_finds_the_lines(tmp_path, shipped_rows, schema):
    rows = [dict(r) for r in shipped_rows[:1200]]
    for row in rows[100:103]:
        row["pickup_latitude"] = ""
    rows[15]["trip_start_month"] = "1e308"  # line 17: the header is line 1
    rows[40]["trip_seconds"] = "180 sec"
    rows[41]["trip_seconds"] = "180 sec"
    path = spans_io.write_span(tmp_path, 1, rows, canonical=False)
    header = path.read_text().splitlines()[0]
    _edit_lines(path, lambda lines: (lines.insert(1000, header), lines.insert(700, "")))
    audit = _audit([path], schema)
    [file] = audit.files
    assert audit.rows == 1201 and file.header_repeats == 1  # CsvExampleGen reads the repeated header as a row
    assert file.header_lines == [1002]  # after the blank line inserted at line 701
    latitude = audit.columns["pickup_latitude"]
    assert latitude.empty.rows == 3 and audit.completeness("pickup_latitude") == 1197 / 1200
    month = audit.columns["trip_start_month"].out_of_domain
    assert (month.rows, month.lines) == (1, [(str(path), 17, "1e308")])
    seconds = audit.columns["trip_seconds"]
    assert seconds.invalid.rows == 2 and [line for _, line, _ in seconds.invalid.lines] == [42, 43]
    expected_empty = sum(r["company"] == "" for r in rows)
    assert audit.columns["company"].empty.rows == expected_empty


def test_audit_reads_empty_and_header_only_files_and_quoted_newlines(tmp_path, shipped_rows, schema):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(features.active().csv_columns))  # not even a newline
    quoted = spans_io.write_span(tmp_path, 1, [dict(shipped_rows[0], company="Big\nCab"), shipped_rows[1]])
    audit = _audit([empty, header_only, quoted], schema)
    assert [f.header is None for f in audit.files] == [True, False, False]
    assert [f.rows for f in audit.files] == [0, 0, 2]
    assert audit.columns["company"].empty.rows == (shipped_rows[1]["company"] == "")


def test_a_file_that_is_not_csv_is_named(tmp_path, schema):
    broken = tmp_path / "data.csv"
    broken.write_text(",".join(features.active().csv_columns) + "\n1,2,3\n")  # fewer fields than the header
    with pytest.raises(span_audit.AuditError, match=r"data\.csv is not readable as CSV"):
        _audit([broken], schema)


# ------------------------------------------------------------------------ completeness floors


def test_floors_follow_the_rule_in_derive():
    assert derive.floor(0.0) == 0.99
    assert derive.floor(0.15) == 0.802  # dropoff_latitude: 1 - (1.25 x 15 % + 1 %) = 80.25 %
    assert derive.floor(0.006) == 0.982
    assert derive.floor(0.99) == 0.0
    assert derive.worst_window([False] * 10 + [True] * 3 + [False] * 10, window=5) == 0.6
    assert derive.worst_window([True, False], window=5) == 0.5


def test_natural_rates_are_measured_on_the_worst_window_of_every_shipped_file(rules):
    files = set(rules["measured"])
    assert files == {"span-1", "span-2", f"tfx/{materialize.SHIPPED_SAMPLE}"}
    worst = f"worst_{derive.WINDOW}_rows"
    for name, natural in rules["natural_missing"].items():
        assert natural == max(m[worst].get(name, 0.0) for m in rules["measured"].values())
        assert natural >= max(m["missing"].get(name, 0.0) for m in rules["measured"].values())
        assert rules["floors"][name] == derive.floor(natural)


def test_the_floors_are_measured_on_every_csv_file_of_a_span_whatever_its_name(tmp_path, shipped_rows):
    spans_io.write_csv(tmp_path / "span-1" / "trips-2026-11.csv", shipped_rows[:300], features.active().csv_columns)
    spans_io.write_csv(tmp_path / "span-1" / "trips-2026-11-late.csv", shipped_rows[300:400], features.active().csv_columns)
    spans_io.write_csv(tmp_path / "span-2" / "trips-2026-12.csv", shipped_rows[400:600], features.active().csv_columns)
    measured = derive.derive_completeness(tmp_path)["measured"]
    rows = {label: m["rows"] for label, m in measured.items() if not label.startswith("tfx/")}
    assert rows == {"span-1/trips-2026-11-late.csv": 100, "span-1/trips-2026-11.csv": 300, "span-2": 200}


def test_every_shipped_taxi_file_passes_its_floors(shipped_spans, schema, rules):
    files = [spans_io.span_dir(shipped_spans, s) / spans_io.SPAN_FILE for s in spans_io.existing_spans(shipped_spans)]
    files.append(materialize.shipped_csv(materialize.SHIPPED_SAMPLE))
    for path in files:
        assert _check(_audit([path], schema), schema, rules) == [], path


def test_one_real_row_with_empty_pickup_fields_in_three_thousand_passes(tmp_path, shipped_rows, schema, rules, rows_with_empty_pickup):
    rows = shipped_rows[:2999] + rows_with_empty_pickup[:1]
    audit = _audit([_span(tmp_path, rows)], schema)
    assert _check(audit, schema, rules) == []
    report = validation.report(audit, rules)
    pickup = next(f for f in report["features"] if f["feature"] == "pickup_latitude")
    assert (pickup["empty"], pickup["rows"], pickup["floor"]) == (1, 3000, 0.985)
    assert pickup["completeness"] == round(2999 / 3000, 6)
    assert not pickup["tolerated"]  # the sample has two such trips in a row: natural for the feed


def test_a_few_bad_rows_in_an_always_complete_feature_are_tolerated_and_reported(tmp_path, shipped_rows, schema, rules):
    rows = [dict(r) for r in shipped_rows[:3000]]
    for row in rows[:3]:
        row["fare"] = ""
    audit = _audit([_span(tmp_path, rows)], schema)
    assert _check(audit, schema, rules) == []
    assert validation.tolerated(validation.report(audit, rules)) == "fare 3 of 3,000 rows empty"
    for row in rows[:31]:  # 1.03 %: beyond the 1 % tolerance
        row["fare"] = ""
    [problem] = _check(_audit([_span(tmp_path, rows)], schema), schema, rules)
    assert problem.sentence == "fare is empty in 1 % of rows (31 of 3,000; floor: a value in 99 %)"


def test_a_spike_of_empty_cells_is_blocked_with_its_share_and_floor(tmp_path, shipped_rows, schema, rules):
    rows = [dict(r) for r in shipped_rows[:3000]]
    for row in rows[:1860]:
        row["trip_seconds"] = ""
    [problem] = _check(_audit([_span(tmp_path, rows)], schema), schema, rules)
    assert (problem.kind, problem.feature) == (validation.LOW_COMPLETENESS, "trip_seconds")
    empty = sum(r["trip_seconds"] == "" for r in rows)
    assert problem.sentence == (
        f"trip_seconds is empty in {validation.pct(empty / 3000)} of rows ({empty:,} of 3,000; floor: a value in 98.2 %)"
    )
    assert problem.sentence.startswith("trip_seconds is empty in 62 % of rows")


def test_the_generators_missing_spike_is_blocked_on_its_features(tmp_path, schema, rules):
    path = generator.write_generated_span(tmp_path, 7, generator.shipped_reference(), 1500, 7, "missing_spike")
    problems = _check(_audit([path], schema), schema, rules)
    assert {p.kind for p in problems} == {validation.LOW_COMPLETENESS}
    assert {p.feature for p in problems} == set(generator.OPTIONAL_BLANKED) - {"dropoff_census_tract"}  # floor 0


# ----------------------------------------------------------------------------- the other rules


def test_empty_and_header_only_spans_say_they_have_no_rows(tmp_path, schema, rules):
    empty = tmp_path / "a" / "data.csv"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    header_only = tmp_path / "b" / "data.csv"
    header_only.parent.mkdir()
    header_only.write_text(",".join(features.active().csv_columns) + "\n")
    for path, why in ((empty, "data.csv is empty (0 bytes)"), (header_only, "data.csv has a header and no rows")):
        problems = _check(_audit([path], schema), schema, rules)
        assert [(p.kind, p.sentence) for p in problems] == [(validation.EMPTY_SPAN, f"span 7 has 0 rows ({why})")]
        assert validation.blocked_message(7, problems).splitlines()[0] == (
            f"span 7 blocked before training: span 7 has 0 rows ({why})"
        )


def test_a_span_far_smaller_than_the_previous_one_is_blocked(tmp_path, shipped_rows, schema, rules):
    audit = _audit([_span(tmp_path, shipped_rows[200:300])], schema)  # 100 trips, none emptier than the floors
    previous = validation.Previous(6, 3000, tfdv.generate_statistics_from_dataframe(pd.DataFrame({"fare": [1.0]})))
    assert [p.sentence for p in _check(audit, schema, rules, previous=previous)] == [
        "span 7 has 100 rows, fewer than 10 % of the 3,000 rows of span 6"
    ]
    assert _check(audit, schema, rules, previous=validation.Previous(6, 1000, previous.statistics)) == []


def test_files_that_changed_after_ingestion_are_blocked(tmp_path, shipped_rows, schema, rules):
    audit = _audit([_span(tmp_path, shipped_rows[:100])], schema)
    [problem] = _check(audit, schema, rules, examples_read=120)
    assert problem.kind == validation.ROWS_CHANGED and "hold 100 rows but ExampleGen read 120" in problem.sentence


def test_a_repeated_header_is_named_by_its_line_and_explains_the_type_anomalies(tmp_path, shipped_rows, schema, rules):
    path = _span(tmp_path, shipped_rows[:1500])
    _edit_lines(path, lambda lines: lines.insert(1000, lines[0]))  # becomes line 1001
    anomalies = [  # what ExampleValidator reports on such a span: every column read as text
        Anomaly(split, name, "UNEXPECTED_DATA_TYPE", "Expected data of type: INT but got STRING")
        for split in ("train", "eval")
        for name in ("fare", "trip_seconds", "trip_start_hour")
    ]
    problems = _check(_audit([path], schema), schema, rules, anomalies=anomalies)
    message = validation.blocked_message(7, problems).splitlines()
    assert message[0] == "span 7 blocked before training: line 1001 repeats the header (and 1 more problem below)"
    assert message[1] == "  - span: HEADER_REPEATED: line 1001 repeats the header"
    assert message[2] == (
        "  - span: SCHEMA_ANOMALY: ExampleValidator: 3 features no longer match the schema because of the "
        "repeated header (UNEXPECTED_DATA_TYPE): fare, trip_seconds, trip_start_hour"
    )


def test_out_of_range_values_are_named_with_their_value_and_line(tmp_path, shipped_rows, schema, rules):
    rows = [dict(r) for r in shipped_rows[:1000]]
    rows[15]["trip_start_month"] = "1e308"
    for row in rows[200:250]:
        row["payment_type"] = "Bitcoin"
    path = spans_io.write_span(tmp_path, 7, rows, canonical=False)
    anomalies = [Anomaly("train", "trip_start_month", "UNEXPECTED_DATA_TYPE", "Expected data of type: INT but got FLOAT")]
    problems = _check(_audit([path], schema), schema, rules, anomalies=anomalies)
    assert [p.line() for p in problems] == [
        "  - trip_start_month: UNEXPECTED_DATA_TYPE: trip_start_month = 1e308 on line 17 is outside the schema's range 1..12",
        '  - payment_type: OUT_OF_DOMAIN: payment_type is not one of the schema\'s values in 50 of 1,000 rows, '
        'e.g. "Bitcoin" on lines 202, 203, 204',
    ]


def test_an_anomaly_no_rule_explains_is_reported_as_it_is(tmp_path, shipped_rows, schema, rules):
    audit = _audit([_span(tmp_path, shipped_rows[:500])], schema)
    anomaly = Anomaly("train", "fare", "UNEXPECTED_DATA_TYPE", "Expected data of type: FLOAT but got INT")
    [problem] = _check(audit, schema, rules, anomalies=[anomaly])
    assert problem.line() == "  - fare: UNEXPECTED_DATA_TYPE: Expected data of type: FLOAT but got INT"


def _statistics(rows: list[dict[str, str]]):
    frame = pd.DataFrame({"trip_seconds": [float(r["trip_seconds"]) if r["trip_seconds"] else None for r in rows]})
    return tfdv.generate_statistics_from_dataframe(frame)


def test_a_unit_change_is_a_broken_feed_and_ordinary_drift_is_not(tmp_path, shipped_spans, schema, rules):
    reference = generator.shipped_reference()
    before = generator.generate(reference, 1500, 1)
    previous = validation.Previous(6, 1500, _statistics(before))
    changed = generator.generate(reference, 1500, 2, "unit_change")
    audit = _audit([_span(tmp_path, changed)], schema)
    [problem] = _check(audit, schema, rules, previous=previous, current=_statistics(changed))
    assert (problem.kind, problem.feature) == (validation.BROKEN_FEED, "trip_seconds")
    assert "trip_seconds looks like a broken feed (a unit change?): its upper decile is" in problem.sentence
    assert "blocked under every drift policy" in problem.sentence
    span_2 = spans_io.read_rows(spans_io.span_dir(shipped_spans, 2) / spans_io.SPAN_FILE)
    span_1 = spans_io.read_rows(spans_io.span_dir(shipped_spans, 1) / spans_io.SPAN_FILE)
    real = validation.Previous(1, len(span_1), _statistics(span_1))
    audit_2 = _audit([spans_io.span_dir(shipped_spans, 2) / spans_io.SPAN_FILE], schema)
    assert _check(audit_2, schema, rules, previous=real, current=_statistics(span_2)) == []


def test_upper_decile_reads_the_quantile_histogram():
    stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame({"x": [float(v) for v in range(1, 1001)]}))
    [feature] = stats.datasets[0].features
    assert validation.upper_decile(feature) == pytest.approx(900, rel=0.02)


def test_shares_are_written_for_people():
    assert [validation.pct(x) for x in (0.621, 0.988, 0.99, 1 / 3000, 0.0, 2999 / 3000, 1.0)] == [
        "62.1 %", "98.8 %", "99 %", "0.033 %", "0 %", "99.96 %", "100 %"
    ]
