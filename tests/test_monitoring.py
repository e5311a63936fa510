"""The monitoring job on request logs written by the real writer with small_run's model's answers.

Three one-day windows ending at END: two clean samples of span 1, then one where fares triple and
every trip is paid in cash.
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from models import features
from monitoring import job, labels, statistics
from conveyor import cli
from pipeline import configs, drift
from serving import request_log
from pipeline import versions
from models.instances import FeatureRules, from_row, parse_instance
from models.saved_model import LoadedModel
from tests.serving_helpers import copy_home

END = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
ROWS_PER_WINDOW = 600
DRIFTING = {"fare", "payment_type"}


def _drifted(row: dict[str, str]) -> dict[str, str]:
    return {**row, "fare": str(float(row["fare"]) * 3), "payment_type": "Cash"}


@pytest.fixture(scope="module")
def logged(small_run, shipped_rows, tmp_path_factory):
    """(config, log root, labels root, {window name: records})."""
    config = copy_home(small_run, tmp_path_factory.mktemp("monitoring") / "home")
    version = versions.serving_version(config.serving_root)
    model = LoadedModel.load(config.serving_root / version, version)
    rules = FeatureRules.from_schema(config.schema_path)
    pool = list(shipped_rows)
    random.Random(5).shuffle(pool)
    samples = {
        "older": (pool[:ROWS_PER_WINDOW], END - 2 * DAY - timedelta(hours=6)),
        "clean": (pool[ROWS_PER_WINDOW : 2 * ROWS_PER_WINDOW], END - DAY - timedelta(hours=6)),
        "drifted": ([_drifted(r) for r in pool[2 * ROWS_PER_WINDOW : 3 * ROWS_PER_WINDOW]], END - timedelta(hours=6)),
    }
    log = request_log.RequestLog(config.request_log_root)
    windows = {}
    for name, (rows, when) in samples.items():
        instances = [parse_instance(from_row(r), rules) for r in rows]
        outputs = model.predict(instances)
        records = [  # ten instances per request
            request_log.record(f"{name}-{i // 10}", i % 10, when, config.model_name, version, inst.features, out)
            for i, (inst, out) in enumerate(zip(instances, outputs))
        ]
        log.append(records, when)
        windows[name] = (records, rows)
    log.close()
    return config, windows


def test_drifted_log_is_flagged_with_the_drifting_features_named(logged, tmp_path):
    config, _ = logged
    result = job.run(config, end=END, hours=24, out_dir=tmp_path / "out")
    data = result.data
    assert data["window"]["predictions"] == data["previous_window"]["predictions"] == ROWS_PER_WINDOW
    assert set(data["drift"]["flagged"]) == DRIFTING
    assert DRIFTING <= set(data["skew"]["flagged"])  # against the model's training statistics
    assert "small_run" in data["skew"]["baseline"] and "/DataGate/validated_statistics/" in data["skew"]["baseline"]
    assert data["alerts"] and "drift" in data["alerts"] and not data["ok"]
    by_feature = {d["feature"]: d for d in data["drift"]["features"]}
    assert by_feature["fare"]["measure"] == drift.JENSEN_SHANNON and by_feature["payment_type"]["measure"] == drift.L_INFINITY
    assert by_feature["fare"]["value"] > by_feature["fare"]["threshold"] == config.drift_thresholds["fare"]
    assert json.loads((tmp_path / "out" / job.RESULT_FILE).read_text()) == data
    html = (tmp_path / "out" / job.REPORT_FILE).read_text()
    assert "ALERT: skew, drift" in html and "Distributions of the flagged features" in html
    assert (tmp_path / "out" / job.STATS_FILE).stat().st_size > 0


def test_two_clean_windows_show_no_drift(logged, tmp_path):
    config, _ = logged
    data = job.run(config, end=END - DAY, hours=24, out_dir=tmp_path).data
    assert data["drift"]["available"] and data["drift"]["flagged"] == []
    assert {"fare", "payment_type", "trip_start_hour"} <= {d["feature"] for d in data["drift"]["features"]}
    assert data["anomalies"] == []


def test_labels_join_into_live_metrics_per_version(logged, tmp_path):
    config, windows = logged
    records, rows = windows["drifted"]
    labeled = list(zip(records, rows))[:200]
    labels.write(tmp_path / "labels" / "a.jsonl", [(r["request_id"], r["index"], float(row["tips"])) for r, row in labeled])
    with open(tmp_path / "labels" / "a.jsonl", "a") as out:  # damaged lines are counted, not fatal
        out.write('{"request_id": "x", "tips": "many"}\nnot json\n')
    data = job.run(config, end=END, hours=24, labels_root=tmp_path / "labels", out_dir=tmp_path / "out").data
    [(version, live)] = data["live_metrics"].items()
    assert version == records[0]["model_version"]
    truth = [features.is_big_tipper(float(row["tips"]), r["features"]["fare"]) for r, row in labeled]
    correct = sum((r["output"]["probability"] > 0.5) == t for (r, _), t in zip(labeled, truth))
    assert live["labeled"] == 200 == data["labels"]["joined"]
    assert live["accuracy"] == pytest.approx(correct / 200)
    assert live["positive_rate"] == pytest.approx(sum(truth) / 200)
    assert "binary_accuracy" in live["evaluation"]  # the Evaluator's figure, for comparison
    assert data["labels"]["invalid_lines"] == 2


def test_monitor_command_exits_non_zero_on_alerts(logged, tmp_path, capsys):
    config, _ = logged
    code = cli.main(["monitor", "--home", str(config.home), "--end", END.isoformat(), "--hours", "24", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 3
    assert "drift: fare, payment_type over the threshold" in out and "ALERT" in out


def test_serving_anomalies_name_the_feature(shipped_rows):
    schema = statistics.load_schema(configs.PipelineConfig().schema_path)
    rows = [from_row(r) for r in shipped_rows[:1000]]
    clean = statistics.schema_anomalies(statistics.compute(rows), schema)
    for row in rows[:20]:
        row["trip_start_hour"] = 31
    found = statistics.schema_anomalies(statistics.compute(rows), schema)
    assert clean == []
    assert [(a.feature, a.kind) for a in found] == [("trip_start_hour", "INT_TYPE_BIG_INT")]


def test_auc_counts_ties_as_half():
    assert labels.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert labels.auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert labels.auc([0.2, 0.3], [1, 1]) is None
