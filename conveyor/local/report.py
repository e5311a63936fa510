"""The run report: one self-contained HTML file per run, written next to the run's log.

`collect` reads what the run did (RunSummary plus MLMD and the artifacts it points to); `render`
turns that into HTML with inline CSS and no scripts or external assets, every text escaped.
"""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from conveyor import analysis
from data import spans_io
from metadata import connection, runs
from pipeline import anomalies, evaluation
from pipeline.configs import PipelineConfig, Threshold
from pipeline.validation import pct

if TYPE_CHECKING:
    from conveyor.local.run_summary import RunSummary

METRIC_LABELS = {"binary_accuracy": "accuracy", "auc": "AUC", "precision": "precision", "recall": "recall"}


@dataclass(frozen=True)
class ArtifactRef:
    key: str
    type_name: str
    id: int
    uri: str
    note: str = ""  # span of Examples, blessed or not, pushed or not


@dataclass(frozen=True)
class LineageRow:
    node: str
    state: str
    inputs: list[ArtifactRef]
    outputs: list[ArtifactRef]


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, already read from MLMD and the artifacts."""

    pipeline_name: str
    summary: RunSummary
    thresholds: tuple[Threshold, ...]
    examples: dict[str, int] = field(default_factory=dict)  # split -> examples in the ingested span
    statistics: dict[str, list[analysis.FeatureSummary]] = field(default_factory=dict)  # split -> features
    anomalies: list[anomalies.Anomaly] | None = None  # None: ExampleValidator did not run
    drift: list[analysis.DriftScore] = field(default_factory=list)
    lineage: list[LineageRow] = field(default_factory=list)


def report_path(summary: RunSummary) -> Path:
    return summary.log_file.with_suffix(".html")


def write(config: PipelineConfig, summary: RunSummary) -> Path:
    """Collect and render the report of the run `summary` describes; returns the file written."""
    path = report_path(summary)
    path.write_text(render(collect(config, summary)), encoding="utf-8")
    return path


def collect(config: PipelineConfig, summary: RunSummary) -> ReportData:
    store = connection.open_metadata(config)
    run = runs.load_run(store, summary.run_id) if summary.run_id else runs.Run("", {})
    examples: dict[str, int] = {}
    statistics: dict[str, list[analysis.FeatureSummary]] = {}
    stats_artifact = run.output("StatisticsGen", "statistics")
    if stats_artifact is not None:
        for split in analysis.split_names(stats_artifact):
            stats = analysis.load_statistics(stats_artifact, split)
            examples[split] = analysis.num_examples(stats)
            statistics[split] = analysis.feature_summaries(stats)
    anomalies_artifact = run.output("ExampleValidator", "anomalies")
    found = None
    if anomalies_artifact is not None:
        found = anomalies.read(anomalies_artifact.uri, anomalies_artifact.properties["split_names"].string_value)
    return ReportData(
        pipeline_name=config.pipeline_name,
        summary=summary,
        thresholds=config.thresholds,
        examples=examples,
        statistics=statistics,
        anomalies=found,
        drift=analysis.drift_scores(store, run),
        lineage=_lineage(store, run),
    )


def _lineage(store: metadata_store.MetadataStore, run: runs.Run) -> list[LineageRow]:
    type_names = {t.id: t.name for t in store.get_artifact_types()}

    def refs(by_key: dict[str, list[metadata_store_pb2.Artifact]]) -> list[ArtifactRef]:
        return [
            ArtifactRef(key, type_names.get(a.type_id, "?"), a.id, a.uri, _note(type_names.get(a.type_id, ""), a))
            for key, artifacts in sorted(by_key.items())
            for a in artifacts
        ]

    return [LineageRow(node.node_id, node.state, refs(node.inputs), refs(node.outputs)) for node in run.nodes.values()]


def _note(type_name: str, artifact: metadata_store_pb2.Artifact) -> str:
    props = artifact.custom_properties
    if type_name == "Examples" and "span" in props:
        return f"span {props['span'].int_value}"
    if type_name == "ModelBlessing" and "blessed" in props:
        return "blessed" if props["blessed"].int_value == 1 else "not blessed"
    if type_name == "PushedModel" and "pushed" in props:
        return "pushed" if props["pushed"].int_value == 1 else "not pushed"
    return ""


# ---------------------------------------------------------------------------------------- HTML


class _Html(str):
    """Text that is already HTML (escaped where needed)."""


class _Td(_Html):
    """A ready table cell (with its own class)."""


def _e(value: object) -> _Html:
    return value if isinstance(value, _Html) else _Html(html.escape(str(value)))


def _tag(name: str, content: object = "", **attrs: str) -> _Html:
    attributes = "".join(f' {k.rstrip("_")}="{html.escape(v)}"' for k, v in attrs.items())
    return _Html(f"<{name}{attributes}>{_e(content)}</{name}>")


def _join(parts: Iterable[object]) -> _Html:
    return _Html("".join(_e(p) for p in parts))


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def _stat(value: float | None) -> str:
    """A feature statistic: 3 decimals, or 4 significant digits for large magnitudes."""
    if value is None or math.isnan(value) or abs(value) < 1e6:
        return _num(value, 3)
    return f"{value:.4g}"


def _signed(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.4f}"


def _table(headers: list[str], rows: list[list[object]], class_: str = "") -> _Html:
    head = _tag("tr", _join(_tag("th", h) for h in headers))
    body = _join(_tag("tr", _join(c if isinstance(c, _Td) else _tag("td", c) for c in row)) for row in rows)
    table = _tag("table", _join([_tag("thead", head), _tag("tbody", body)]), class_=class_)
    return _tag("div", table, class_="scroll")


def _cell(content: object, class_: str) -> _Td:
    return _Td(_tag("td", content, class_=class_))


def _section(title: str, *parts: object) -> _Html:
    return _tag("section", _join([_tag("h2", title), *parts]))


def _card(label: str, value: object, id_: str, tone: str = "", small: bool = False) -> _Html:
    value_class = "value small" if small else "value"
    return _tag(
        "div",
        _join([_tag("div", label, class_="label"), _tag("div", value, class_=value_class, id=id_)]),
        class_=f"card {tone}".strip(),
    )


def _outcome(data: ReportData) -> _Html:
    s = data.summary
    overall = s.evaluation.metrics.get(evaluation.OVERALL, {}) if s.evaluation else {}
    status = "OK" if s.ok else f"FAILED in {s.failed_component}" if s.failed_component else "FAILED"
    if s.evaluation is None:
        blessed, blessed_tone = "not evaluated", ""
    else:
        blessed, blessed_tone = ("yes", "good") if s.evaluation.blessed else ("no", "bad")
    cards = [
        _card("status", status, "status", "good" if s.ok else "bad"),
        _card("span ingested", "–" if s.span is None else spans_io.label(s.span, s.span_source), "span"),
        _card("training window", ", ".join([*map(str, s.window_spans), *(spans_io.label(f, spans_io.FEEDBACK) for f in s.window_feedback_spans)]) or "–", "window"),
        _card("accuracy (overall)", _num(overall.get("binary_accuracy")), "accuracy"),
        _card("AUC (overall)", _num(overall.get("auc")), "auc"),
        _card("blessed", blessed, "blessed", blessed_tone),
        _card("pushed", s.pushed_path or "nothing", "pushed", "good" if s.pushed_path else "", small=bool(s.pushed_path)),
        _card("total time", f"{s.seconds:.1f} s", "total"),
    ]
    parts: list[object] = [_tag("div", _join(cards), class_="cards")]
    if s.error:
        parts.append(_tag("pre", s.error, class_="error"))
    return _join(parts)


def _timings(data: ReportData) -> _Html:
    s = data.summary
    longest = max((seconds for _, _, seconds in s.timings), default=0.0) or 1.0
    rows: list[list[object]] = []
    for node, status, seconds in s.timings:
        bar = _tag("div", "", class_="bar", style=f"width:{100 * seconds / longest:.1f}%")
        rows.append([node, status, _cell(f"{seconds:.1f}", "num"), _cell(bar, "barcell")])
    if s.failed_component:
        rows.append([s.failed_component, _cell("failed", "bad"), _cell("–", "num"), ""])
    if not rows:
        return _section("Component timings", _tag("p", "No component finished."))
    return _section("Component timings", _table(["component", "status", "seconds", ""], rows, "timings"))


def _data(data: ReportData) -> _Html:
    span = data.summary.span
    title = f"Data: span {span}" if span is not None else "Data"
    if not data.statistics:
        return _section(title, _tag("p", "StatisticsGen did not run in this run."))
    counts = ", ".join(f"{split}: {n:,} examples" for split, n in data.examples.items())
    parts: list[object] = [_tag("p", f"TFDV statistics of the ingested span ({counts}).")]
    if data.summary.validation is not None:
        parts += _completeness(data.summary.validation)
    split = "train" if "train" in data.statistics else next(iter(data.statistics))
    rows = [
        [
            f.feature,
            f.kind,
            _cell(pct(f.present), "num"),
            _cell(_stat(f.mean), "num"),
            _cell(_stat(f.std_dev), "num"),
            _cell(_stat(f.minimum), "num"),
            _cell(_stat(f.maximum), "num"),
            _cell("–" if f.unique is None else f.unique, "num"),
            "–" if f.top_value is None else f"{f.top_value} ({100 * (f.top_share or 0):.0f} %)",
        ]
        for f in data.statistics[split]
    ]
    parts.append(_tag("h3", f"Features ({split} split)"))
    headers = ["feature", "kind", "with a value", "mean", "std dev", "min", "max", "unique", "top value"]
    parts.append(_table(headers, rows, "features"))
    parts.append(_tag("h3", "Anomalies against the schema"))
    if data.anomalies is None:
        parts.append(_tag("p", "ExampleValidator did not run in this run."))
    elif not data.anomalies:
        parts.append(_tag("p", "No anomalies: the span matches the schema.", class_="good-text", id="anomalies"))
    else:
        rows = [[a.split, a.feature, a.kind, a.description] for a in data.anomalies]
        parts.append(_table(["split", "feature", "anomaly", "description"], rows, "anomalies"))
    return _section(title, *parts)


def _completeness(validation: dict) -> list[_Html]:
    """DataGate's verdict on the span's empty cells: completeness per feature against its floor."""
    rows = [
        [
            f["feature"],
            _cell(pct(f["completeness"]), "num"),
            _cell(pct(f["floor"]), "num"),
            _cell(pct(f["natural_missing"]), "num"),
            _cell(f"{f['empty']:,} of {f['rows']:,}", "num"),
            _cell("tolerated", "bad") if f["tolerated"] else _cell("ok", "good"),
        ]
        for f in validation["features"]
    ]
    intro = (
        f"DataGate counted the empty cells of the span's {validation['rows']:,} rows: every feature has a value "
        "in at least its floor's share of rows. Tolerated: more empty cells than is natural for the feature, "
        "within the floor (schema/completeness.json)."
    )
    headers = ["feature", "with a value", "floor", "natural empty", "empty rows", ""]
    return [_tag("h3", "Completeness (DataGate)"), _tag("p", intro), _table(headers, rows, "completeness")]


def _drift(data: ReportData) -> _Html:
    if not data.drift:
        return _section("Drift", _tag("p", "No drift check in this run.", id="drift"))
    rows = [
        [
            d.feature,
            d.measure,
            _cell(_num(d.value), "num"),
            _cell(_num(d.threshold), "num"),
            _cell("drifted" if d.drifted else "ok", "bad" if d.drifted else "good"),
            d.source,
        ]
        for d in sorted(data.drift, key=lambda d: (not d.drifted, d.feature))
    ]
    return _section("Drift", _table(["feature", "measure", "score", "threshold", "", "from"], rows, "drift"))


def _threshold_text(rule: Threshold) -> str:
    text = f"{rule.metric} ≥ {rule.lower_bound:g}"
    if rule.max_drop is not None:
        text += f" and at most {rule.max_drop:g} below the baseline"
    if rule.slice_max_drop is not None:
        text += f"; on every slice at most {rule.slice_max_drop:g} below the baseline"
    return text


def _evaluation(data: ReportData) -> _Html:
    s = data.summary
    if s.evaluation is None:
        return _section("Evaluation by slice", _tag("p", "No evaluation in this run (it stopped before the Evaluator)."))
    result = s.evaluation
    has_baseline = bool(result.baseline_by_slice)
    headers = ["slice", "examples"]
    for metric in evaluation.COMPARED_METRICS:
        label = METRIC_LABELS[metric]
        headers += [label, f"{label} baseline", "Δ"] if has_baseline else [label]
    rows: dict[str, list[object]] = {}
    for c in evaluation.compare_with_baseline(result):
        row = rows.setdefault(c.slice, [c.slice, _cell(_num(result.metrics[c.slice].get("example_count"), 0), "num")])
        row.append(_cell(_num(c.candidate), "num"))
        if has_baseline:
            drop = c.diff is not None and c.diff < 0
            row += [_cell(_num(c.baseline), "num base"), _cell(_signed(c.diff), "num base drop" if drop else "num base")]
    baseline_text = (
        "Compared with the baseline: the model serving when this one was evaluated."
        if has_baseline
        else "No baseline: no model was serving when this one was evaluated."
    )
    parts: list[object] = [_tag("p", baseline_text, id="baseline")]
    parts.append(_table(headers, list(rows.values()), "slices"))
    verdict = "Blessed: every threshold is met." if result.blessed else "Not blessed."
    parts.append(_tag("h3", "Blessing"))
    parts.append(_tag("p", verdict, class_="good-text" if result.blessed else "bad-text"))
    rules = "; ".join(_threshold_text(t) for t in data.thresholds)
    parts.append(_tag("p", f"Thresholds (overall unless said): {rules}."))
    if result.failures:
        parts.append(_tag("ul", _join(_tag("li", f) for f in result.failures)))
    if result.not_gated:
        parts.append(_tag("p", "Not gated by the blessing rule:"))
        parts.append(_tag("ul", _join(_tag("li", f) for f in result.not_gated), id="not-gated"))
    if s.missing_metrics:
        missing = f"ERROR: threshold metrics missing from the evaluation: {sorted(s.missing_metrics)}"
        parts.append(_tag("p", missing, class_="bad-text"))
    return _section("Evaluation by slice", *parts)


def _push(data: ReportData) -> _Html:
    s = data.summary
    if s.pushed_path:
        text = f"Pushed to {s.pushed_path}"
    elif s.evaluation is not None and not s.evaluation.blessed:
        text = "Not pushed: the model was not blessed."
    elif not s.ok:
        where = f" in {s.failed_component}" if s.failed_component else ""
        text = f"Not pushed: the run failed{where} before Pusher."
    else:
        text = "Nothing pushed."
    return _section("Push decision", _tag("p", text, id="push-decision"))


def _artifacts(refs: list[ArtifactRef]) -> _Html:
    items = []
    for ref in refs:
        note = f" ({ref.note})" if ref.note else ""
        items.append(_tag("li", _join([f"{ref.key}: {ref.type_name} #{ref.id}{note} ", _tag("code", ref.uri)])))
    return _tag("ul", _join(items), class_="refs") if items else _e("–")


def _lineage_section(data: ReportData) -> _Html:
    if not data.lineage:
        return _section("Lineage", _tag("p", "No executions recorded for this run."))
    rows = [[row.node, row.state, _artifacts(row.inputs), _artifacts(row.outputs)] for row in data.lineage]
    intro = _tag("p", "What each step of this run read and wrote, as recorded in ML Metadata (artifact ids).")
    return _section("Lineage", intro, _table(["step", "state", "inputs", "outputs"], rows, "lineage"))


_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:26px} h2{margin:0 0 12px;font-size:20px} h3{font-size:16px;margin:18px 0 8px}
.meta{color:#5b6475;font-size:13px;margin-bottom:18px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 20px;margin:16px 0}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 14px}
.card .label{font-size:12px;text-transform:uppercase;color:#5b6475;letter-spacing:.04em}
.card .value{font-size:20px;font-weight:bold;margin-top:4px;word-break:break-all} .card .value.small{font-size:13px}
.card.good{border-left:6px solid #1e8e3e} .card.bad{border-left:6px solid #d93025}
.scroll{overflow-x:auto} table{border-collapse:collapse;width:100%;font-size:13px}
table.slices{font-size:12px} table.slices th,table.slices td{padding:4px 6px}
th,td{border-bottom:1px solid #e6e8ec;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5} tbody tr:nth-child(even){background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums} td.base{color:#5b6475} td.drop{color:#d93025}
td.good,.good-text{color:#1e8e3e;font-weight:bold} td.bad,.bad-text{color:#d93025;font-weight:bold}
td.barcell{width:40%} .bar{background:#4c8bf5;height:10px;border-radius:3px;min-width:1px}
pre.error{background:#fdecea;border:1px solid #f5c2bd;padding:10px;white-space:pre-wrap;font-size:12px}
ul.refs{margin:0;padding-left:16px} code{font-size:11px;color:#5b6475;word-break:break-all}
"""


def render(data: ReportData) -> str:
    s = data.summary
    meta = (
        f"pipeline {data.pipeline_name} · run {s.run_id or '–'} · "
        f"written {time.strftime('%Y-%m-%d %H:%M:%S')} · log {s.log_file}"
    )
    body = _join(
        [
            _tag("h1", "Conveyor run report"),
            _tag("div", meta, class_="meta"),
            _outcome(data),
            _push(data),
            _timings(data),
            _data(data),
            _drift(data),
            _evaluation(data),
            _lineage_section(data),
        ]
    )
    title = f"Conveyor run {s.run_id or ''} — span {'–' if s.span is None else s.span}"
    head = _join([_Html('<meta charset="utf-8">'), _tag("title", title), _tag("style", _Html(_CSS))])
    page = _tag("html", _join([_tag("head", head), _tag("body", _tag("main", body))]), lang="en")
    return f"<!DOCTYPE html>\n{page}\n"
