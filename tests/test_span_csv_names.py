"""A span is every CSV file in span-N/, whatever their names (docs: `span-N/*.csv`), through the installed
`conveyor run` with no --span: found, validated, ingested whole, trained on and pushed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data import spans_io
from models import features
from pipeline import configs
from tests.conftest import SMALL_SPAN_ROWS

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))  # the console script `make setup` installs
FILES = {"trips-2026-12.csv": 500, "trips-2026-12-late.csv": SMALL_SPAN_ROWS - 500}


@pytest.fixture(scope="module")
def month_files_run(shipped_rows, tmp_path_factory):
    base = tmp_path_factory.mktemp("span_csv_names")
    home, spans_root = base / "home", base / "spans"
    start = 0
    for name, rows in FILES.items():
        spans_io.write_csv(spans_root / "span-1" / name, shipped_rows[start : start + rows], features.active().csv_columns)
        start += rows
    done = subprocess.run(
        [CONVEYOR, "run", "--home", str(home), "--spans-root", str(spans_root), "--train-steps", "50", "--eval-steps", "5"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done, configs.load(home=home, spans_root=spans_root)


def test_a_span_of_month_named_csv_files_is_found_trained_on_and_pushed(month_files_run):
    done, _ = month_files_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running conveyor-taxi on span 1" in done.stdout
    assert "blessed: yes" in done.stdout and "pushed: " in done.stdout and "pushed: nothing" not in done.stdout


def test_every_csv_file_of_the_span_is_validated_and_ingested(month_files_run):
    import tensorflow as tf

    from metadata import lineage

    done, config = month_files_run
    assert f"validation: {SMALL_SPAN_ROWS:,} rows" in done.stdout  # DataGate audited both files
    (span,) = lineage.for_config(config).spans
    assert sorted(path.rsplit("/", 1)[1] for path in span.data_files) == sorted(FILES)
    records = tf.io.gfile.glob(f"{span.examples_uri}/Split-*/*")
    examples = sum(1 for _ in tf.data.TFRecordDataset(records, compression_type="GZIP"))
    assert examples == SMALL_SPAN_ROWS  # ExampleGen read both files, every row
