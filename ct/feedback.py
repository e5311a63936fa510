"""Labelled feedback: served predictions whose outcome (the tip) has arrived.

File format: CSV files in <home>/feedback/incoming/, one row per served trip, with the span
columns of models/features.py (canonical format, data/spans_io.py) plus
  request_id      the serving request's id
  model_version   the served model version that answered
  probability     the probability it returned
`tips` is empty until the outcome is known; only rows with `tips` are labelled. When the CT
controller retrains on feedback it folds the labelled rows into a new span and moves the files
to <home>/feedback/consumed/span-N/.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from data import spans_io
from models import features
from pipeline.configs import PipelineConfig

EXTRA_COLUMNS = ("request_id", "model_version", "probability")
COLUMNS = features.CSV_COLUMNS + EXTRA_COLUMNS


def incoming_dir(config: PipelineConfig) -> Path:
    return config.feedback_dir / "incoming"


def incoming(config: PipelineConfig) -> list[Path]:
    return sorted(incoming_dir(config).glob("*.csv"))


def labelled_rows(files: list[Path]) -> list[dict[str, str]]:
    return [row for path in files for row in spans_io.read_rows(path) if row.get(features.TIPS_KEY, "") != ""]


def live_accuracy(rows: list[dict[str, str]]) -> float | None:
    """Binary accuracy of the served probabilities against the arrived labels (float32, as in-graph)."""
    if not rows:
        return None
    labels = [features.is_big_tipper(float(r[features.TIPS_KEY]), float(r[features.FARE_KEY])) for r in rows]
    predicted = [float(r["probability"]) > 0.5 for r in rows]
    return float(np.mean([p == y for p, y in zip(predicted, labels)]))


def write(config: PipelineConfig, name: str, rows: list[dict[str, object]]) -> Path:
    """Write a feedback file (rows carry COLUMNS) atomically into the incoming folder."""
    return spans_io.write_csv(incoming_dir(config) / f"{name}.csv", rows, COLUMNS)


def fold_into_span(config: PipelineConfig, files: list[Path], span: int) -> Path:
    """Write the labelled rows of `files` as span `span` and move the files out of incoming."""
    path = spans_io.write_span(config.spans_root, span, labelled_rows(files))
    consumed = config.feedback_dir / "consumed" / f"span-{span}"
    consumed.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.move(str(file), consumed / file.name)
    return path
