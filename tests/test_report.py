"""The HTML run report: written by every run, rendered in headless Chromium (Debian's package)."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from conveyor import analysis
from conveyor.local import report, run_summary
from metadata import connection, runs
from pipeline.evaluation import slice_order

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a throw-away profile; its stdout."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (CONVEYOR_APT_PACKAGES in the Makefile)")
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


VOID_ELEMENTS = {"meta", "link", "br", "hr", "img", "input"}


class RenderedPage(HTMLParser):
    """The text of elements with an id, and each table's rows (by the table's class)."""

    def __init__(self, dom: str):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._open_ids: list[tuple[str, int, list[str]]] = []  # (id, depth, text parts)
        self._depth = 0
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_ELEMENTS:
            return
        attributes = dict(attrs)
        self._depth += 1
        if "id" in attributes:
            self._open_ids.append((attributes["id"] or "", self._depth, []))
        if tag == "table":
            self._table = self.tables.setdefault(attributes.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None
        if self._open_ids and self._open_ids[-1][1] == self._depth:
            name, _, parts = self._open_ids.pop()
            self.by_id[name] = " ".join("".join(parts).split())
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        for _, _, parts in self._open_ids:
            parts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def body_rows(self, table: str) -> list[list[str]]:
        return [row for row in self.tables[table] if row][1:]  # without the header row


def rendered(tmp_path: Path, html_file: Path) -> RenderedPage:
    return RenderedPage(chromium(tmp_path, "--dump-dom", html_file.as_uri()))


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

    timings = page.body_rows("timings")
    assert [(row[0], row[1], row[2]) for row in timings] == [(n, s, f"{t:.1f}") for n, s, t in summary.timings]
    slices = page.body_rows("slices")
    assert [row[0] for row in slices] == sorted(summary.evaluation.metrics, key=slice_order)
    assert slices[0][:3] == ["overall", f"{overall['example_count']:.0f}", f"{overall['binary_accuracy']:.4f}"]

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


def test_report_text_is_escaped(small_run):
    config, summary = small_run
    data = report.collect(config, summary)
    hostile = dataclasses.replace(summary, ok=False, error="<script>alert('x')</script> & <b>bold</b>")
    page = report.render(dataclasses.replace(data, summary=hostile))
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
