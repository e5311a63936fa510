"""The span rules DataGate applies under every drift policy, and the sentences it blocks with.

A span is blocked, before Transform and Trainer, when
- it has no rows, or fewer than `min_rows_ratio` x the rows of the previous validated span;
- its files no longer hold what ExampleGen read;
- a row repeats the header, or the header lacks a column of the feature contract or has one it
  does not know;
- a cell holds a value of the wrong type or outside the schema's domain (any number of rows);
- a feature has a value in fewer rows than its completeness floor (schema/completeness.json, from
  schema/derive.py): missing means an empty cell, counted in the span's CSV (data/span_audit.py);
- a broken feed: a numeric feature without an upper bound in the schema moved its upper decile by
  more than `broken_feed_factor` against the previous span (a unit change);
- an implausible span: a cross-column rule of the feature contract's [plausibility] is broken (a
  ratio's median outside its band, or two columns equal in too many rows): columns swapped,
  re-mapped or copied; the sentence names both columns (a broken feed on one of them explains it);
- a broken meaning: a numeric drift-scored feature without an upper bound in the schema scores a
  decile JSD above `broken_meaning_jsd` against the previous span (its values left the previous
  span's range almost entirely: another column, not drift), unless a broken feed explains it;
- ExampleValidator found an anomaly that none of the above explains.

Each problem carries a plain sentence; `blocked_message` puts the most telling one on the first
line and every problem, with its rows and examples, on the lines below.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection, Mapping

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from data.plausibility import SAME, Tally
from data.span_audit import Domain, Finding, SpanAudit
from models.contract import Plausibility

if TYPE_CHECKING:  # pipeline.anomalies imports TFX; the run summary and report need none of it
    from pipeline.anomalies import Anomaly

# Problem kinds DataGate names itself; TFDV's anomaly kinds are used as they are.
ROWS_CHANGED = "ROWS_CHANGED"
EMPTY_SPAN = "EMPTY_SPAN"
FEW_ROWS = "FEW_ROWS"
HEADER_REPEATED = "HEADER_REPEATED"
MISSING_COLUMN = "MISSING_COLUMN"
UNKNOWN_COLUMN = "UNKNOWN_COLUMN"
BROKEN_FEED = "BROKEN_FEED"
IMPLAUSIBLE = "IMPLAUSIBLE"
BROKEN_MEANING = "BROKEN_MEANING"
OUT_OF_DOMAIN = "OUT_OF_DOMAIN"
INVALID_VALUE = "INVALID_VALUE"
LOW_COMPLETENESS = "LOW_COMPLETENESS"
SCHEMA_ANOMALY = "SCHEMA_ANOMALY"
ORDER = (ROWS_CHANGED, EMPTY_SPAN, FEW_ROWS, HEADER_REPEATED, MISSING_COLUMN, UNKNOWN_COLUMN, IMPLAUSIBLE,
         BROKEN_FEED, BROKEN_MEANING, OUT_OF_DOMAIN, INVALID_VALUE, LOW_COMPLETENESS, SCHEMA_ANOMALY)
SPAN = "span"  # the "feature" of a problem of the whole span
UPPER_DECILE = 0.9
MIN_PLAUSIBILITY_ROWS = 30  # a rule measured on fewer rows of the span is not judged


@dataclass(frozen=True)
class Problem:
    kind: str  # one of ORDER
    sentence: str  # for a person: "trip_seconds is empty in 62 % of rows (...)"
    feature: str = SPAN
    tfdv_kinds: tuple[str, ...] = ()  # ExampleValidator's anomaly kinds on the same feature

    def line(self) -> str:
        return f"  - {self.feature}: {'+'.join(self.tfdv_kinds) or self.kind}: {self.sentence}"


@dataclass(frozen=True)
class Previous:
    """The previous validated span: the row-count, broken-feed and broken-meaning baseline."""

    span: int
    rows: int
    statistics: statistics_pb2.DatasetFeatureStatisticsList  # its train split
    plausibility: Mapping[str, float] = field(default_factory=dict)  # rule -> its measure (when recorded)


def pct(share: float) -> str:
    """62 %, 98.8 %, 0.033 %, 99.96 % (a share below 1 never reads 100 %)."""
    value = 100 * share
    if 0 < value < 1:
        text = f"{value:.2g}"
    elif 99 < value < 100:
        text = f"{math.floor(value * 100) / 100:.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text} %"


def number(value: float) -> str:
    """1,860,000 / 1,740 / 0.25 / 1e+308."""
    if abs(value) >= 1e15 or (value != 0 and abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.4g}"


def domains(schema: schema_pb2.Schema) -> dict[str, Domain]:
    """Each feature's domain in `schema` (int/float ranges, string values)."""
    named = {d.name: d for d in schema.string_domain}
    out = {}
    for f in schema.feature:
        if f.HasField("int_domain") or f.HasField("float_domain"):
            d = f.int_domain if f.HasField("int_domain") else f.float_domain
            out[f.name] = Domain(d.min if d.HasField("min") else None, d.max if d.HasField("max") else None)
        elif f.HasField("string_domain"):
            out[f.name] = Domain(values=frozenset(f.string_domain.value))
        elif f.HasField("domain") and f.domain in named:
            out[f.name] = Domain(values=frozenset(named[f.domain].value))
    return out


# ------------------------------------------------------------------------------------ the rules


def check(
    span: int,
    audit: SpanAudit,
    examples_read: int,
    anomalies: list[Anomaly],
    completeness: dict[str, Any],
    schema: schema_pb2.Schema,
    current: statistics_pb2.DatasetFeatureStatisticsList | None,
    previous: Previous | None,
    min_rows_ratio: float,
    broken_feed_factor: float,
    broken_meaning_jsd: float,
    drift_features: Collection[str],
) -> list[Problem]:
    """Every problem of span `span`, most telling first ([] = the span passes)."""
    if audit.rows != examples_read:
        return [_rows_changed(span, audit, examples_read)]
    if audit.rows == 0:
        return [_empty(span, audit)]
    problems = _rows(span, audit, previous, min_rows_ratio) + _structure(audit)
    problems += _values(audit) + _completeness(audit, completeness)
    broken: list[Problem] = []
    if previous is not None and current is not None:
        broken = _broken_feed(current, previous, schema, broken_feed_factor)
        fed = {p.feature for p in broken}
        drifted = [n for n in _unbounded_numeric(schema) if n in drift_features and n not in fed]
        problems += broken + _broken_meaning(current, previous, drifted, broken_meaning_jsd)
    problems += _implausible(span, audit.plausibility, previous, {p.feature for p in broken})
    problems = _with_anomalies(problems, anomalies, header_repeated=audit.header_repeats > 0)
    return sorted(problems, key=lambda p: ORDER.index(p.kind))


def blocked_message(span: int, problems: list[Problem]) -> str:
    """The DataValidationError text: the one-line reason, then every problem on its own line."""
    head = f"span {span} blocked before training: {problems[0].sentence}"
    if len(problems) > 1:
        head += f" (and {len(problems) - 1} more {'problem' if len(problems) == 2 else 'problems'} below)"
    return "\n".join([head] + [p.line() for p in problems])


def _rows_changed(span: int, audit: SpanAudit, examples_read: int) -> Problem:
    if not audit.files:
        return Problem(ROWS_CHANGED, f"no CSV file of span {span} was found, although ExampleGen read {examples_read:,} rows")
    return Problem(
        ROWS_CHANGED,
        f"span {span}'s files hold {audit.rows:,} rows but ExampleGen read {examples_read:,}: "
        "they changed after ingestion (a re-run ingests them again)",
    )


def _empty(span: int, audit: SpanAudit) -> Problem:
    why = [f"{os.path.basename(f.name)} is empty (0 bytes)" if f.header is None else
           f"{os.path.basename(f.name)} has a header and no rows" for f in audit.files]
    return Problem(EMPTY_SPAN, f"span {span} has 0 rows" + (f" ({'; '.join(why)})" if why else ""))


def _rows(span: int, audit: SpanAudit, previous: Previous | None, ratio: float) -> list[Problem]:
    if previous is None or previous.rows == 0 or audit.rows >= ratio * previous.rows:
        return []
    return [Problem(
        FEW_ROWS,
        f"span {span} has {audit.rows:,} rows, fewer than {pct(ratio)} of the {previous.rows:,} rows of span {previous.span}",
    )]


def _structure(audit: SpanAudit) -> list[Problem]:
    problems = []
    several = len(audit.files) > 1
    for f in audit.files:
        where = f"{os.path.basename(f.name)} " if several else ""
        if f.header_repeats:
            lines = [str(n) for n in f.header_lines]
            more = f" ({f.header_repeats:,} rows in all)" if f.header_repeats > len(lines) else ""
            if len(lines) == 1:
                text = f"{where}line {lines[0]} repeats the header{more}"
            elif lines:
                text = f"{where}lines {', '.join(lines[:-1])} and {lines[-1]} repeat the header{more}"
            else:
                text = f"{where}{f.header_repeats:,} rows repeat the header"
            problems.append(Problem(HEADER_REPEATED, text))
        for column in f.missing_columns:
            problems.append(Problem(MISSING_COLUMN, f"{where}the header has no {column} column", column))
        for column in f.unknown_columns:
            problems.append(Problem(UNKNOWN_COLUMN, f"{where}the header has a column the feature contract does not know: {column}", column))
    return problems


def _shown(text: str) -> str:
    try:
        float(text)
        return text
    except ValueError:
        return f'"{text}"'


def _examples(finding: Finding, several_files: bool) -> str:
    """'31 on lines 2, 3, 4' or '31 on line 2, 40 on line 9'."""
    by_text: dict[str, list[str]] = defaultdict(list)
    for file, line, text in finding.lines:
        by_text[text].append(f"{os.path.basename(file)} line {line}" if several_files else str(line))
    parts = []
    for text, where in by_text.items():
        label = "" if several_files else ("line " if len(where) == 1 else "lines ")
        parts.append(f"{_shown(text)} on {label}{', '.join(where)}")
    if not parts:  # not located (a fourth distinct text, say): name the texts
        parts = [f"{_shown(t)} ({n:,} rows)" for t, n in finding.texts.items()]
    return ", ".join(parts)


def _outside(domain: Domain) -> str:
    if domain.values is not None:
        return "not one of the schema's values"
    if domain.high is None:
        return f"below the schema's minimum {domain.low:g}"
    if domain.low is None:
        return f"above the schema's maximum {domain.high:g}"
    return f"outside the schema's range {domain}"


def _values(audit: SpanAudit) -> list[Problem]:
    problems = []
    several = len(audit.files) > 1
    for name, column in audit.columns.items():
        rows = audit.rows_with_column(name)
        outside, invalid = column.out_of_domain, column.invalid
        if outside.rows:
            if outside.rows == 1 and outside.lines:
                text = f"{name} = {_examples(outside, several)} is {_outside(column.domain)}"
            else:
                text = f"{name} is {_outside(column.domain)} in {outside.rows:,} of {rows:,} rows, e.g. {_examples(outside, several)}"
            problems.append(Problem(OUT_OF_DOMAIN, text, name))
        if invalid.rows:
            noun = "an integer" if column.kind == "INT" else "a finite 32-bit number"
            if invalid.rows == 1 and invalid.lines:
                text = f"{name} = {_examples(invalid, several)} is not {noun}"
            else:
                text = f"{name} holds text that is not {noun} in {invalid.rows:,} of {rows:,} rows, e.g. {_examples(invalid, several)}"
            problems.append(Problem(INVALID_VALUE, text, name))
    return problems


def _completeness(audit: SpanAudit, completeness: dict[str, Any]) -> list[Problem]:
    problems = []
    for name, floor in completeness["floors"].items():
        share = audit.completeness(name)
        if share is None or share >= floor:
            continue
        empty, rows = audit.columns[name].empty.rows, audit.rows_with_column(name)
        problems.append(Problem(
            LOW_COMPLETENESS,
            f"{name} is empty in {pct(1 - share)} of rows ({empty:,} of {rows:,}; floor: a value in {pct(floor)})",
            name,
        ))
    return problems


def feature_statistics(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {f.path.step[0]: f for f in stats.datasets[0].features} if stats.datasets else {}


def upper_decile(feature: statistics_pb2.FeatureNameStatistics) -> float | None:
    """The value 90 % of the feature's values are at most, from TFDV's quantile histogram."""
    for histogram in feature.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES and histogram.buckets:
            total = sum(b.sample_count for b in histogram.buckets)
            seen = 0.0
            for bucket in histogram.buckets:
                seen += bucket.sample_count
                if seen >= UPPER_DECILE * total * (1 - 1e-9):
                    return bucket.high_value
    return None


def _unbounded_numeric(schema: schema_pb2.Schema) -> list[str]:
    return [
        f.name for f in schema.feature
        if f.type in (schema_pb2.INT, schema_pb2.FLOAT)
        and not (f.int_domain.HasField("max") if f.HasField("int_domain") else f.float_domain.HasField("max"))
    ]


def _broken_feed(
    current: statistics_pb2.DatasetFeatureStatisticsList, previous: Previous, schema: schema_pb2.Schema, factor: float
) -> list[Problem]:
    now, before = feature_statistics(current), feature_statistics(previous.statistics)
    problems = []
    for name in _unbounded_numeric(schema):
        if name not in now or name not in before:
            continue
        high_now, high_before = upper_decile(now[name]), upper_decile(before[name])
        if high_now is None or not high_before or not math.isfinite(high_now):
            continue
        ratio = abs(high_now) / abs(high_before)
        if 1 / factor <= ratio <= factor:
            continue
        change = f"{number(ratio)} times" if ratio > 1 else (f"1/{number(1 / ratio)} of" if ratio else "against")
        problems.append(Problem(
            BROKEN_FEED,
            f"{name} looks like a broken feed (a unit change?): its upper decile is {number(high_now)}, "
            f"{change} span {previous.span}'s {number(high_before)} (limit x{factor:g}); blocked under every drift policy",
            name,
        ))
    return problems


def plausibility_measures(tallies: list[Tally]) -> dict[str, float]:
    """Rule -> its measure on the span (the rules measured on enough rows)."""
    return {t.rule.name: t.value for t in tallies if t.value is not None and t.rows >= MIN_PLAUSIBILITY_ROWS}


def _implausible(span: int, tallies: list[Tally], previous: Previous | None, fed: set[str]) -> list[Problem]:
    """The broken rules, furthest outside first; a rule with a broken feed (`fed`) on one of its two
    columns only is explained by that unit change (on both, they were swapped: it stays)."""
    measures = plausibility_measures(tallies)
    problems: list[tuple[float, Problem]] = []
    for tally in tallies:
        rule, value = tally.rule, measures.get(tally.rule.name)
        if value is None or (value <= rule.max_share if rule.kind == SAME else rule.low <= value <= rule.high):
            continue
        if len(fed & set(rule.columns)) == 1:
            continue
        first, second = rule.named
        before = previous.plausibility.get(rule.name) if previous is not None else None
        if rule.kind == SAME:
            against = f" against {pct(before)} in span {previous.span}" if previous is not None and before is not None else ""
            text = (f"{first} and {second} look copied or re-mapped: they hold the same value in {pct(value)} of rows "
                    f"in span {span}{against} (limit {pct(rule.max_share)})")
        else:
            against = f" against {number(before)} in span {previous.span}" if previous is not None and before is not None else ""
            text = (f"{first} and {second} look swapped or re-mapped: {rule.name.replace('_', ' ')} has a median of "
                    f"{number(value)} in span {span}{against} (band {number(rule.low)}-{number(rule.high)})")
        problems.append((_distance(rule, value), Problem(IMPLAUSIBLE, text + "; blocked under every drift policy", first)))
    return [p for _, p in sorted(problems, key=lambda item: -item[0])]  # the rule broken furthest first


def _distance(rule: Plausibility, value: float) -> float:
    """How far (|ln| of the ratio) a measure lies outside its rule's band or above its limit."""
    if rule.kind == SAME:
        return math.log(value / rule.max_share)
    if value < rule.low:
        return math.log(rule.low / value) if value > 0 else math.inf
    return math.log(value / rule.high) if rule.high > 0 else math.inf


def _broken_meaning(
    current: statistics_pb2.DatasetFeatureStatisticsList, previous: Previous, names: list[str], limit: float
) -> list[Problem]:
    from pipeline import drift  # imports TFDV: the run summary and report import this module without it

    now, before = feature_statistics(current), feature_statistics(previous.statistics)
    problems = []
    for name in names:
        if not (drift.has_quantiles(now.get(name)) and drift.has_quantiles(before.get(name))):
            continue
        score = drift.decile_jsd(before[name], now[name])
        if score > limit:
            problems.append(Problem(
                BROKEN_MEANING,
                f"{name} no longer looks like the same column: its values score a Jensen-Shannon divergence of "
                f"{score:.3f} over span {previous.span}'s deciles (limit {limit:g}, far beyond drift); blocked under every drift policy",
                name,
            ))
    return problems


def _with_anomalies(problems: list[Problem], anomalies: list[Anomaly], header_repeated: bool) -> list[Problem]:
    """Fold ExampleValidator's anomalies into the problems: a feature's TFDV kinds join its own
    problems; the rest are problems of their own (or, after a repeated header, one line)."""
    kinds: dict[str, set[str]] = defaultdict(set)
    descriptions: dict[str, str] = {}
    for a in anomalies:
        kinds[a.feature].update(a.kind.split(","))
        descriptions.setdefault(a.feature, a.description)
    explained = {p.feature for p in problems}
    out = [
        Problem(p.kind, p.sentence, p.feature, tuple(sorted(kinds[p.feature]))) if p.feature in kinds else p
        for p in problems
    ]
    rest = sorted(set(kinds) - explained)
    if rest and header_repeated:
        all_kinds = ", ".join(sorted(set().union(*(kinds[f] for f in rest))))
        out.append(Problem(
            SCHEMA_ANOMALY,
            f"ExampleValidator: {len(rest)} features no longer match the schema because of the repeated header "
            f"({all_kinds}): {', '.join(rest)}",
        ))
    else:
        out += [Problem(SCHEMA_ANOMALY, descriptions[f], f, tuple(sorted(kinds[f]))) for f in rest]
    return out


# ---------------------------------------------------------------------------- the passing span


def report(audit: SpanAudit, completeness: dict[str, Any]) -> dict[str, Any]:
    """What DataGate writes as validation.json for a span that passed: rows, per feature its
    completeness against the floor ("tolerated" marks a feature with more empty cells than is
    natural for it, above variation x natural, yet within its floor), and each plausibility rule's
    measure (the next span's comparison)."""
    rows = []
    for name, floor in completeness["floors"].items():
        share = audit.completeness(name)
        if share is None:
            continue
        natural = completeness["natural_missing"][name]
        rows.append({
            "feature": name,
            "empty": audit.columns[name].empty.rows,
            "rows": audit.rows_with_column(name),
            "completeness": round(share, 6),
            "floor": floor,
            "natural_missing": natural,
            "tolerated": (1 - share) > completeness["variation"] * natural + 1e-12,
        })
    return {"rows": audit.rows, "files": [os.path.basename(f.name) for f in audit.files], "features": rows,
            "plausibility": plausibility_measures(audit.plausibility)}


def tolerated(validation: dict[str, Any]) -> str:
    """'pickup_latitude 1 of 3,000 rows empty, ...' for the features that used the tolerance."""
    return ", ".join(
        f"{f['feature']} {f['empty']:,} of {f['rows']:,} rows empty" for f in validation["features"] if f["tolerated"]
    )
