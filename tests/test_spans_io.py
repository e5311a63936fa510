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


def _span_folders(root):
    """span-1: one file named by month; span-2: two files; folders that hold no span's CSV file."""
    rows = [{"fare": "5", "trip_seconds": "60", "payment_type": "Cash"}]
    columns = ("fare", "trip_seconds", "payment_type")
    spans_io.write_csv(root / "span-1" / "trips-2026-12.csv", rows, columns)
    spans_io.write_csv(root / "span-2" / "trips-a.csv", rows, columns)
    spans_io.write_csv(root / "span-2" / "trips-b.csv", rows, columns)
    (root / "span-3").mkdir()
    (root / "span-3" / "notes.txt").write_text("no csv here\n")
    (root / "span-3" / "manifest.json").write_text("{}\n")
    spans_io.write_csv(root / "span-x" / "data.csv", rows, columns)  # not a span number
    spans_io.write_csv(root / "feedback-5" / "data.csv", rows, columns)  # the other namespace
    return root


def test_a_span_is_any_csv_file_in_its_folder(tmp_path):
    root = _span_folders(tmp_path)
    assert spans_io.existing_spans(root) == [1, 2]
    assert spans_io.existing_spans(root, spans_io.FEEDBACK) == [5]
    assert spans_io.span_files(root, 2) == [root / "span-2" / "trips-a.csv", root / "span-2" / "trips-b.csv"]
    assert spans_io.span_files(root, 3) == []


def test_a_span_is_any_csv_file_in_its_folder_in_object_storage_too(tmp_path):
    root = _span_folders(tmp_path)
    assert spans_io.existing_spans(root.as_uri()) == [1, 2]
    assert spans_io.existing_spans(root.as_uri() + "/", spans_io.FEEDBACK) == [5]


def test_no_spans_names_the_documented_layout(tmp_path):
    from metadata import spans
    from pipeline import configs

    config = configs.load(spans_root=tmp_path, home=tmp_path / "home")
    with pytest.raises(LookupError, match=r"no spans under .* \(expected span-N/\*\.csv: CSV files of any name"):
        spans.newest(config)
    _span_folders(tmp_path)
    assert spans.newest(config) == 2
    assert spans.spans_to_run(config, latest_only=False) == [1, 2]


def test_a_feedback_span_with_a_csv_file_of_another_name_is_not_rewritten(tmp_path):
    spans_io.write_csv(tmp_path / "feedback-1" / "traffic.csv", [{"fare": "5"}], ("fare",))
    with pytest.raises(FileExistsError, match="feedback span 1 already exists"):
        spans_io.write_span(tmp_path, 1, [{"fare": "6"}], columns=("fare",), namespace=spans_io.FEEDBACK)
