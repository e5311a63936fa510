"""`conveyor runs` and `conveyor runs compare`: the runs of a home as a table, and two runs side by side.

The comparison (`compare`) is one list of sections, printed as text (`format_comparison`) or
rendered as a self-contained HTML page (`render_html`, a Jinja2 template with autoescape: every
value is text, however it was recorded). Every figure comes from ML Metadata through
metadata/run_records.py; the change is always B - A.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from typing import Any

from data import spans_io
from metadata import hyperparameters as hyperparameters_lib
from metadata.run_records import RunDetail, RunRecord
from models import label_metrics
from pipeline import blessing_checks, evaluation

MISSING = "-"
WIDE = 36  # a value longer than this is printed on its own line


def _time(seconds: float) -> str:
    return f"{datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc):%Y-%m-%d %H:%M:%S}"


def _metric(record: RunRecord, name: str) -> str:
    value = record.metrics.get(name)
    return MISSING if value is None else evaluation.format_value(name, value)


def _window(record: RunRecord) -> str:
    fed = f" + f{record.window_feedback_spans}" if record.window_feedback_spans else ""
    return f"{record.window_spans or MISSING}{fed}"


def _source(record: RunRecord, by_id: dict[str, int]) -> str:
    found = record.hyperparameters
    if found is None:
        return MISSING
    if found.tuning is None:
        text = "default"
    elif found.tuning.run_id == record.run_id:
        text = "tuned here"
    else:
        text = f"tuned in #{by_id.get(found.tuning.run_id or '', '?')}"
    return text + ("+pipeline" if found.overrides else "")


def _outcome(record: RunRecord) -> str:
    if record.failed_node:
        return f"failed: {record.failed_node}"
    if record.evaluation is None:
        return MISSING
    return "yes" if record.evaluation.blessed else "NO"


def _blessed(record: RunRecord) -> str:
    if record.evaluation is None:
        return "not evaluated"
    return "yes" if record.evaluation.blessed else "NO"


def table(records: list[RunRecord], last: int | None = None) -> str:
    """One line per run (the `last` ones only, if given), oldest first (`#` is what `runs compare`
    takes, as is the run id)."""
    by_id = {r.run_id: r.number for r in records}
    records = records[-last:] if last else records
    metric_set = label_metrics.active()
    head = ("#", "run id", "started (UTC)", "launched by", "span", "window", "hyperparameters", "accuracy", "auc", "blessed", "pushed", "seconds")
    rows = [
        (
            str(r.number), r.run_id, _time(r.started), r.launched_by,
            spans_io.label(r.span, r.span_namespace) if r.span is not None else MISSING, _window(r), _source(r, by_id),
            _metric(r, metric_set.accuracy), _metric(r, "auc") if "auc" in metric_set.table else "n/a",
            _outcome(r), r.pushed_version or MISSING, f"{r.seconds:.1f}",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    right = {0, 7, 8, 11}
    return "\n".join(
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in [head, *rows]
    )


@dataclass(frozen=True)
class Row:
    label: str
    a: str
    b: str
    change: str = ""  # B - A, for numbers
    same: bool | None = None  # whether A and B are the same, when not simply a == b

    @property
    def differs(self) -> bool:
        return not self.same if self.same is not None else self.a != self.b


@dataclass(frozen=True)
class SliceRow:
    name: str
    examples: tuple[str, str]
    metrics: dict[str, Row]  # metric -> its two values and the change


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    slices: list[SliceRow] = field(default_factory=list)
    lines: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))  # per run, e.g. blessing reasons


@dataclass
class Comparison:
    a: RunDetail
    b: RunDetail
    sections: list[Section]


def _number_row(label: str, a: float | None, b: float | None, digits: int = 4) -> Row:
    """Two figures with `digits` decimals and their change."""
    text = lambda v: MISSING if v is None else f"{v:.{digits}f}"  # noqa: E731
    change = f"{round(b - a, digits) + 0.0:+.{digits}f}" if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)) else ""
    return Row(label, text(a), text(b), change)


def _run_section(a: RunDetail, b: RunDetail) -> Section:
    def row(label: str, get: Any) -> Row:
        return Row(label, get(a), get(b))

    return Section("run", [
        row("run id", lambda d: d.record.run_id),
        row("started (UTC)", lambda d: _time(d.record.started)),
        row("launched by", lambda d: d.record.launched_by),
        row("span ingested", lambda d: spans_io.label(d.record.span, d.record.span_namespace) if d.record.span is not None else MISSING),
        row("outcome", lambda d: f"failed: {d.record.failed_node}" if d.record.failed_node else "pushed" if d.record.pushed_version else "not pushed"),
        row("pushed version", lambda d: d.record.pushed_version or MISSING),
        _number_row("seconds", a.record.seconds, b.record.seconds, 1),
    ])


def _data_section(a: RunDetail, b: RunDetail) -> Section:
    section = Section("data", [Row("training window", _window(a.record), _window(b.record))])
    name = lambda s: f"{'feedback span' if s.namespace == spans_io.FEEDBACK else 'span'} {s.span}"  # noqa: E731
    spans = {name(s): s for s in a.spans} | {name(s): s for s in b.spans}
    by_run = [{name(s): s for s in d.spans} for d in (a, b)]
    for label in spans:
        found = [by.get(label) for by in by_run]
        section.rows.append(Row(f"{label} files", *(s.data_pattern if s else "not in the window" for s in found)))
        section.rows.append(Row(f"{label} read as", *(s.input_fingerprint if s else "not in the window" for s in found)))
    return section


def _code_section(a: RunDetail, b: RunDetail) -> Section:
    return Section("code", [
        Row("trainer", a.trainer_code or MISSING, b.trainer_code or MISSING),
        Row("transform", a.transform_code or MISSING, b.transform_code or MISSING),
    ])


def _hyperparameter_section(a: RunDetail, b: RunDetail) -> Section:
    found = (a.record.hyperparameters, b.record.hyperparameters)
    names = sorted({name for h in found if h for name in h.values})
    section = Section("hyperparameters")
    for name in names:
        values = [hyperparameters_lib.format_value(h.values[name]) if h and name in h.values else MISSING for h in found]
        origins = [h.origin(name) if h and name in h.values else "" for h in found]
        section.rows.append(Row(name, *(f"{v} ({o})" if o else v for v, o in zip(values, origins)), same=values[0] == values[1]))
    section.rows.append(Row("source", *((h.tuning.describe() if h.tuning else h.source) if h else MISSING for h in found)))
    return section


def _metrics_sections(a: RunDetail, b: RunDetail) -> list[Section]:
    results = (a.record.evaluation, b.record.evaluation)
    overall = Section("metrics overall")
    metric_set = label_metrics.active()
    counts = metric_set.names(metric_set.counts)
    for metric in (*metric_set.names(metric_set.compared), *counts):
        values = [r.metrics.get(evaluation.OVERALL, {}).get(metric) if r else None for r in results]
        overall.rows.append(_number_row(metric, *values, 0 if metric in counts else 4))
    per_slice = Section("metrics per slice")
    names = sorted({name for r in results if r for name in r.metrics}, key=evaluation.slice_order)
    for name in names:
        values = [r.metrics.get(name, {}) if r else {} for r in results]
        counts = tuple(f"{v['example_count']:.0f}" if "example_count" in v else MISSING for v in values)
        per_slice.slices.append(SliceRow(name, counts, {m: _number_row(m, values[0].get(m), values[1].get(m)) for m in metric_set.table}))
    return [overall, per_slice]


def _verdict_lines(detail: RunDetail) -> list[str]:
    result = detail.record.evaluation
    if result is None:
        return ["not evaluated"]
    if result.blessed:
        lines = ["blessed: every gated threshold met"]
        if detail.gate is not None:
            lines += blessing_checks.explain(result, detail.thresholds, detail.gate)
    else:
        lines = ["not blessed:"] + [f"- {reason}" for reason in result.failures or ["no reason recorded"]]
    lines += [f"not gated: {note}" for note in result.not_gated]
    return lines


def _blessing_section(a: RunDetail, b: RunDetail) -> Section:
    baseline = lambda d: f"version {d.baseline_version}" if d.baseline_version else "none"  # noqa: E731
    return Section(
        "blessing",
        [
            Row("blessed", _blessed(a.record), _blessed(b.record)),
            Row("baseline", baseline(a), baseline(b)),
            Row("infra check", str(a.infra or MISSING), str(b.infra or MISSING)),
        ],
        lines=(_verdict_lines(a), _verdict_lines(b)),
    )


def _seconds_section(a: RunDetail, b: RunDetail) -> Section:
    seconds = (a.record.component_seconds, b.record.component_seconds)
    names = list(dict.fromkeys([*seconds[0], *seconds[1]]))
    return Section("component seconds", [_number_row(n, seconds[0].get(n), seconds[1].get(n), 1) for n in names])


def compare(a: RunDetail, b: RunDetail) -> Comparison:
    return Comparison(a, b, [
        _run_section(a, b), _data_section(a, b), _code_section(a, b), _hyperparameter_section(a, b),
        *_metrics_sections(a, b), _blessing_section(a, b), _seconds_section(a, b),
    ])


def _text_rows(rows: list[Row]) -> list[str]:
    width = max([len(r.label) for r in rows] + [10])
    narrow = [r for r in rows if max(len(r.a), len(r.b)) <= WIDE]
    value_width = max([len(r.a) for r in narrow] + [len("A")])
    lines = []
    for r in rows:
        mark = " " if not r.differs else "*"
        if r in narrow:
            lines.append(f"{mark} {r.label:<{width}}  {r.a:<{value_width}}  {r.b:<{value_width}}  {r.change}".rstrip())
        else:
            lines += [f"{mark} {r.label:<{width}}  A {r.a}", f"  {'':<{width}}  B {'(same)' if not r.differs else r.b}"]
    return lines


def _text_slices(slices: list[SliceRow]) -> list[str]:
    titles = [f"{m} A, B, change" for m in label_metrics.active().table]
    width = max([30] + [len(t) + 2 for t in titles])
    lines = [f"  {'slice':<28}{'examples A/B':>14}" + "".join(f"{t:>{width}}" for t in titles)]
    for s in slices:
        cells = "".join(f"{f'{r.a} {r.b} {r.change or MISSING}':>{width}}" for r in s.metrics.values())
        lines.append(f"  {s.name:<28}{'/'.join(s.examples):>14}{cells}")
    return lines


def format_comparison(found: Comparison) -> str:
    """The comparison as text: A and B side by side, * marking what differs, the change B - A."""
    lines = [f"A: run #{found.a.record.number} {found.a.record.run_id}", f"B: run #{found.b.record.number} {found.b.record.run_id}"]
    for section in found.sections:
        lines += ["", section.title]
        if section.rows:
            lines += _text_rows(section.rows)
        if section.slices:
            lines += _text_slices(section.slices)
        for name, extra in zip("AB", section.lines):
            if extra:
                lines += [f"  {name}: {extra[0]}", *(f"     {line}" for line in extra[1:])]
    return "\n".join(lines)


def render_html(found: Comparison) -> str:
    """The comparison as one self-contained HTML page."""
    from pipeline import pages

    return pages.render("conveyor", "run_comparison.html.j2", comparison=found, metrics=label_metrics.active().table)
