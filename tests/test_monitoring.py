"""The monitoring job on request logs written by the real writer with small_run's model's answers.

Three one-day windows ending at END: two clean samples of span 1, then one where fares triple and
every trip is paid in cash; and a small window (fewer predictions than distances need) a week earlier.
"""
from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from conveyor import cli
from models import scores
from models.instances import FeatureRules, from_row, parse_instance
from models.saved_model import LoadedModel
from monitoring import job, labels, live, report, statistics
from pipeline import configs, drift, versions
from serving import request_log
from tests import taxi
from tests.browser import rendered
from tests.serving_helpers import copy_home

END = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
ROWS_PER_WINDOW = 600
DRIFTING = {"fare", "payment_type"}
SMALL_WINDOW = 100  # < monitor_min_predictions


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
        "small": (pool[3 * ROWS_PER_WINDOW : 3 * ROWS_PER_WINDOW + SMALL_WINDOW], END - 7 * DAY),
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
    by_measure = {(d["feature"], d["measure"]): d for d in data["drift"]["features"]}
    fare, shift = by_measure["fare", drift.JENSEN_SHANNON], by_measure["fare", drift.MEDIAN_SHIFT]
    assert by_measure["payment_type", drift.L_INFINITY]["flagged"]
    assert fare["value"] > fare["threshold"] == config.drift_thresholds["fare"]
    assert shift["flagged"] and shift["value"] == pytest.approx(math.log(3), abs=0.05)  # fares x3
    assert json.loads((tmp_path / "out" / job.RESULT_FILE).read_text()) == data
    html = (tmp_path / "out" / job.REPORT_FILE).read_text()
    assert "ALERT: skew, drift" in html and "Distributions of the flagged features" in html
    assert (tmp_path / "out" / job.STATS_FILE).stat().st_size > 0


def test_the_report_shows_the_drifted_window_in_chromium(logged, tmp_path):
    config, _ = logged
    data = job.run(config, end=END, hours=24, out_dir=tmp_path / "out").data
    page = rendered(tmp_path, tmp_path / "out" / job.REPORT_FILE)
    page.assert_inert()
    assert page.by_id["status"] == "ALERT: skew, drift"
    drift = page.body_rows("drift")
    flagged = [d for d in data["drift"]["features"] if d["flagged"]]
    assert {row[0] for row in drift[: len(flagged)]} == DRIFTING  # flagged first
    scores = sorted((d["feature"], round(d["value"], 4)) for d in data["drift"]["features"])
    assert sorted((row[0], float(row[2])) for row in drift) == scores
    assert {row[0] for row in page.body_rows("skew")} == {d["feature"] for d in data["skew"]["features"]}
    assert "Distributions of the flagged features" in page.text and "this window" in page.text


# Were it markup, the script and the image's onerror would run (and rename the page) as Chromium
# loads it; alert() would block headless Chromium, so they only set the title.
HOSTILE = """<script>document.title='pwned'</script>"onmouseover=alert(1) x="<img src=x onerror=document.title='pwned'>&amp;"""


def test_hostile_served_values_reach_the_report_as_text_in_chromium(logged, tmp_path):
    """Served requests whose payment_type is hostile text: skew flags it, the SERVING schema names
    the value, and the page shows it literally, with no script element or event handler."""
    config, windows = logged
    records, _ = windows["clean"]
    when = END - DAY - timedelta(hours=6)
    hostile = [{**r, "features": {**r["features"], "payment_type": HOSTILE}} for r in records]
    log = request_log.RequestLog(tmp_path / "log")
    log.append(hostile, when)
    log.close()
    data = job.run(config, end=END - DAY, hours=24, log_root=tmp_path / "log", out_dir=tmp_path / "out").data
    assert "payment_type" in data["skew"]["flagged"]
    page = rendered(tmp_path, tmp_path / "out" / job.REPORT_FILE)
    page.assert_inert()
    assert not [tag for tag, _ in page.elements if tag == "img"]
    [anomaly] = [row for row in page.body_rows("anomalies") if row[0] == "payment_type"]
    [described] = [a["description"] for a in data["anomalies"] if a["feature"] == "payment_type"]
    assert anomaly[2] == " ".join(described.split()) and "<script>document.title=" in anomaly[2]  # TFDV quotes the value
    assert f"{HOSTILE}training0.0%" in page.text  # the value's shares in the distributions: none in training


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
    result = job.run(config, end=END, hours=24, labels_root=tmp_path / "labels", out_dir=tmp_path / "out")
    data = result.data
    [(version, live)] = data["live_metrics"].items()
    assert version == records[0]["model_version"]
    truth = [taxi.is_big_tipper(float(row["tips"]), r["features"]["fare"]) for r, row in labeled]
    correct = sum((r["output"]["probability"] > 0.5) == t for (r, _), t in zip(labeled, truth))
    assert live["labeled"] == 200 == data["labels"]["joined"]
    assert live["accuracy"] == pytest.approx(correct / 200)
    assert live["positive_rate"] == pytest.approx(sum(truth) / 200)
    assert "binary_accuracy" in live["evaluation"]  # the Evaluator's figure, for comparison
    assert data["labels"]["invalid_lines"] == 2
    # An offline AUC undefined on its eval data (one class) reads n/a, not TFMA's 0.0.
    one_class = {**live["evaluation"], "auc": 0.0, "true_positives": 0.0, "false_negatives": 0.0}
    page = report.render({**data, "live_metrics": {version: {**live, "evaluation": one_class}}}, result.stats)
    assert "<td class=\"num\">n/a (one class)</td>" in page


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
    assert scores.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert scores.auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert scores.auc([0.2, 0.3], [1, 1]) is None


def _label(path, pairs, tips=lambda row: float(row["tips"])):
    labels.write(path, [(r["request_id"], r["index"], tips(row)) for r, row in pairs])


def test_a_live_accuracy_drop_is_an_alert_with_its_reason(logged, tmp_path, capsys):
    """Every rider in the clean window tipped the whole fare: the model's "no big tip" answers are
    wrong, accuracy falls below the floor and far below the version's offline accuracy."""
    config, windows = logged
    records, rows = windows["clean"]
    _label(tmp_path / "labels" / "all-tipped.jsonl", list(zip(records, rows)), tips=lambda row: float(row["fare"]))
    code = cli.main(["monitor", "--home", str(config.home), "--end", (END - DAY).isoformat(), "--hours", "24",
                     "--labels", str(tmp_path / "labels"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "out" / job.RESULT_FILE).read_text())
    [(_version, m)] = data["live_metrics"].items()
    truth = [taxi.is_big_tipper(float(row["fare"]), r["features"]["fare"]) for r, row in zip(records, rows)]
    right = sum((r["output"]["probability"] > 0.5) == t for r, t in zip(records, truth))
    assert m["labeled"] == ROWS_PER_WINDOW and m["accuracy"] == pytest.approx(right / ROWS_PER_WINDOW)
    assert m["accuracy"] < config.live_min_accuracy and m["state"] == live.LOW
    assert m["offline_accuracy"] == m["evaluation"]["binary_accuracy"] and m["offline_accuracy"] - m["accuracy"] > config.live_max_accuracy_drop
    assert m["auc"] is None  # one class: no AUC, however many labels
    assert data["alerts"] == ["performance"] and data["status"] == job.ALERT and code == 3
    assert "below the floor" in out and "ALERT: performance" in out
    html = (tmp_path / "out" / job.REPORT_FILE).read_text()
    assert "ALERT: performance" in html and "below the floor" in html


def test_a_handful_of_labels_gives_no_accuracy_and_is_not_judged(logged, tmp_path):
    config, windows = logged
    records, rows = windows["clean"]
    _label(tmp_path / "labels" / "few.jsonl", list(zip(records, rows))[:20])
    data = job.run(config, end=END - DAY, hours=24, labels_root=tmp_path / "labels", out_dir=tmp_path / "out").data
    [m] = data["live_metrics"].values()
    assert m["labeled"] == 20 and m["accuracy"] is None and m["auc"] is None and m["state"] == live.TOO_FEW_LABELS
    assert data["status"] == job.OK and any("live accuracy" in n and "20 labelled" in n for n in data["not_judged"])


def test_no_traffic_is_its_own_state_not_ok(logged, tmp_path, capsys):
    config, _ = logged
    code = cli.main(["monitor", "--home", str(config.home), "--end", (END + 30 * DAY).isoformat(), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    data = json.loads((tmp_path / job.RESULT_FILE).read_text())
    assert data["status"] == job.NO_TRAFFIC and not data["ok"] and code == 4
    assert data["live_metrics"] == {} and data["skew"]["reason"] == "no predictions"
    assert "NO TRAFFIC" in out and "NO TRAFFIC" in (tmp_path / job.REPORT_FILE).read_text()


def test_distances_need_enough_predictions(logged, tmp_path):
    config, _ = logged
    data = job.run(config, end=END - 7 * DAY + timedelta(hours=6), hours=24, out_dir=tmp_path).data
    assert data["window"]["predictions"] == SMALL_WINDOW and data["status"] == job.OK
    for name in ("skew", "drift"):
        assert not data[name]["available"] and data[name]["reason"] == f"{SMALL_WINDOW} predictions; distances need {config.monitor_min_predictions}"
    assert len([n for n in data["not_judged"] if "distances need" in n]) == 2
