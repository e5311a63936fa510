"""Span files are written in one canonical CSV format, atomically."""
import pytest

from data import spans_io


def test_values_are_formatted_by_declared_type():
    assert spans_io.format_value("trip_seconds", "180.0") == "180"
    assert spans_io.format_value("fare", "12") == "12.0"
    assert spans_io.format_value("payment_type", "Cash") == "Cash"
    assert spans_io.format_value("dropoff_census_tract", "") == ""
    assert spans_io.format_value("fare", None) == ""


def test_non_integral_value_in_int_column_is_rejected():
    with pytest.raises(ValueError, match="trip_seconds"):
        spans_io.format_value("trip_seconds", "1.5")


def test_write_span_round_trips_and_is_listed(tmp_path):
    rows = [{"fare": "5", "trip_seconds": "60.0", "payment_type": "Cash"}]
    path = spans_io.write_span(tmp_path, 7, rows, columns=("fare", "trip_seconds", "payment_type"))
    assert path == tmp_path / "span-7" / "data.csv"
    assert spans_io.read_rows(path) == [{"fare": "5.0", "trip_seconds": "60", "payment_type": "Cash"}]
    assert spans_io.existing_spans(tmp_path) == [7]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_failed_write_leaves_no_partial_span(tmp_path):
    rows = [{"trip_seconds": "1.5"}]
    with pytest.raises(ValueError):
        spans_io.write_span(tmp_path, 3, rows, columns=("trip_seconds",))
    assert spans_io.existing_spans(tmp_path) == []
    assert list((tmp_path / "span-3").iterdir()) == []


def test_materialize_is_idempotent(shipped_spans):
    from data import materialize

    before = {p: p.stat().st_mtime_ns for p in shipped_spans.rglob("*.csv")}
    assert materialize.materialize(shipped_spans) == []
    assert {p: p.stat().st_mtime_ns for p in shipped_spans.rglob("*.csv")} == before
    assert len(spans_io.read_rows(spans_io.span_dir(shipped_spans, 1) / "data.csv")) == 10_000
    assert len(spans_io.read_rows(spans_io.span_dir(shipped_spans, 2) / "data.csv")) == 5_000
