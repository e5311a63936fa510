"""The HTML run report: written by every run, rendered in headless Chromium (Debian's package)."""
from __future__ import annotations

import dataclasses

from PIL import Image

from conveyor import analysis
from conveyor.local import report, run_summary
from metadata import connection, runs
from pipeline import anomalies, blessing_checks, configs
from pipeline.evaluation import Evaluation, slice_order
from tests.browser import chromium, rendered


def test_every_run_writes_its_report_next_to_its_log(small_run):
    _, summary = small_run
    assert summary.report_file == summary.log_file.with_suffix(".html")
    assert summary.report_file.is_file()
    assert f"report: {summary.report_file}" in run_summary.format_summary(summary)


def test_report_shows_the_key_figures_in_chromium(small_run, tmp_path):
    config, summary = small_run
    page = rendered(tmp_path, summary.report_file)
    overall = summary.evaluation.metrics["overall"]
    assert page.by_id["status"] == "OK"
    assert page.by_id["span"] == "1" and page.by_id["window"] == "1"
    assert page.by_id["accuracy"] == f"{overall['binary_accuracy']:.4f}"
    assert page.by_id["auc"] == f"{overall['auc']:.4f}"
    assert page.by_id["blessed"] == "yes"
    assert page.by_id["pushed"] == summary.pushed_path
    assert page.by_id["push-decision"] == f"Pushed to {summary.pushed_path}"
    assert page.by_id["anomalies"] == "No anomalies: the span matches the schema."
    assert page.by_id["drift"] == "No drift check in this run."
    assert page.by_id["baseline"].startswith("No baseline")
    checks = blessing_checks.explain(summary.evaluation, summary.thresholds, summary.gate)  # as the summary shows them
    assert checks and page.by_id["blessing-checks"] == " ".join("".join(checks).split())

    timings = page.body_rows("timings")
    assert [(row[0], row[1], row[2]) for row in timings] == [(n, s, f"{t:.1f}") for n, s, t in summary.timings]
    slices = page.body_rows("slices")
    assert [row[0] for row in slices] == sorted(summary.evaluation.metrics, key=slice_order)
    assert slices[0][:3] == ["overall", f"{overall['example_count']:.0f}", f"{overall['binary_accuracy']:.4f}"]
    cash = next(row for row in slices if row[0] == "payment_type=Cash")  # no big tip recorded in cash: one class
    assert cash[3] == cash[5] == "n/a (one class)"  # AUC and recall (precision: a figure if any cash trip was predicted big)

    store = connection.open_metadata(config)
    run = runs.load_run(store, summary.run_id)
    lineage = page.body_rows("lineage")
    assert [row[0] for row in lineage] == list(run.nodes)
    trainer_row = next(row for row in lineage if row[0] == "Trainer")
    assert f"Model #{run.output('Trainer', 'model').id}" in trainer_row[3]

    stats = analysis.load_statistics(run.output("StatisticsGen", "statistics"), "train")
    features = page.body_rows("features")
    assert [row[0] for row in features] == [f.feature for f in analysis.feature_summaries(stats)]


def test_report_screenshot_is_a_rendered_page(small_run, tmp_path):
    _, summary = small_run
    shot = tmp_path / "report.png"  # a temp dir: screenshots never go into the repository
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", summary.report_file.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # text, tables, badges: not blank


def test_report_of_a_blocked_run_lists_its_anomalies(blocked_run, tmp_path):
    _, summary = blocked_run
    page = rendered(tmp_path, summary.report_file)
    assert page.by_id["status"] == "FAILED in DataGate"
    assert page.by_id["span"] == "2"
    assert page.by_id["blessed"] == "not evaluated"
    assert page.by_id["pushed"] == "nothing"
    assert page.by_id["push-decision"] == "Not pushed: the run failed in DataGate before Pusher."
    anomalies = page.body_rows("anomalies")
    assert {(row[1], row[2]) for row in anomalies} == {("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")}
    assert "train" in {row[0] for row in anomalies} and all("Bitcoin" in row[3] for row in anomalies)
    assert page.body_rows("timings")[-1][:2] == ["DataGate", "failed"]


def test_drift_scores_are_rendered_when_present(small_run, tmp_path):
    config, summary = small_run
    data = report.collect(config, summary)
    drift = [
        analysis.DriftScore("DriftCheck.anomalies [SplitPair-train_train]", "fare", "JENSEN_SHANNON_DIVERGENCE", 0.01, 0.1),
        analysis.DriftScore("DriftCheck.anomalies [SplitPair-train_train]", "payment_type", "L_INFTY", 0.25, 0.1),
    ]
    page_file = tmp_path / "drift.html"
    page_file.write_text(report.render(dataclasses.replace(data, drift=drift)), encoding="utf-8")
    rows = rendered(tmp_path, page_file).body_rows("drift")
    assert [row[:5] for row in rows] == [
        ["payment_type", "L_INFTY", "0.2500", "0.1000", "drifted"],
        ["fare", "JENSEN_SHANNON_DIVERGENCE", "0.0100", "0.1000", "ok"],
    ]


# Were it markup, the script and the image's onerror would run (and rename the page) as Chromium
# loads it; alert() would block headless Chromium, so they only set the title.
HOSTILE = """<script>document.title='pwned'</script>"onmouseover=alert(1) x="<img src=x onerror=document.title='pwned'>&amp;"""


def test_hostile_text_reaches_the_page_as_text_in_chromium(tmp_path):
    """A feature value, an anomaly, an error message and a path from a run, all hostile: the DOM
    Chromium builds has no script element and no event handler, and shows each text literally."""
    evaluation = Evaluation({"overall": {"binary_accuracy": 0.8, "example_count": 10.0}, f"payment_type={HOSTILE}": {}},
                            blessed=False, failures=[HOSTILE], not_gated=[HOSTILE])
    summary = run_summary.RunSummary(
        run_id=HOSTILE, ok=False, seconds=1.0, log_file=tmp_path / "run.log", timings=[(HOSTILE, "complete", 1.0)],
        error=HOSTILE, failed_component=HOSTILE, span=1, evaluation=evaluation, pushed_path=HOSTILE,
    )
    data = report.ReportData(
        pipeline_name=HOSTILE,
        summary=summary,
        thresholds=configs.PipelineConfig().thresholds,
        examples={"train": 1},
        statistics={"train": [analysis.FeatureSummary(HOSTILE, "categorical", 1.0, unique=1, top_value=HOSTILE, top_share=1.0)]},
        anomalies=[anomalies.Anomaly("train", HOSTILE, "ENUM_TYPE_UNEXPECTED_STRING_VALUES", HOSTILE)],
        drift=[analysis.DriftScore(HOSTILE, HOSTILE, "L_INFINITY", 0.5, 0.1)],
        lineage=[report.LineageRow(HOSTILE, "COMPLETE", [], [report.ArtifactRef("model", "Model", 1, HOSTILE, HOSTILE)])],
    )
    page_file = tmp_path / "hostile.html"
    page_file.write_text(report.render(data), encoding="utf-8")
    page = rendered(tmp_path, page_file)
    page.assert_inert()
    assert not [tag for tag, _ in page.elements if tag == "img"]
    assert page.by_id["status"] == f"FAILED in {HOSTILE}" and page.by_id["pushed"] == HOSTILE
    assert page.body_rows("features")[0][0] == HOSTILE and page.body_rows("features")[0][-1] == f"{HOSTILE} (100 %)"
    assert page.body_rows("anomalies")[0][1::2] == [HOSTILE, HOSTILE]
    assert page.body_rows("drift")[0][0] == HOSTILE and page.body_rows("slices")[1][0] == f"payment_type={HOSTILE}"
    assert page.body_rows("lineage")[0][0] == HOSTILE and f"({HOSTILE}) {HOSTILE}" in page.body_rows("lineage")[0][3]
    assert page.text.count(HOSTILE) >= 12  # also the title, the meta line, the error, failures, timings
