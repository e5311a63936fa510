"""report.html: one self-contained page (inline CSS, no scripts) that shows a monitoring result.

Status first, then the window, schema anomalies, skew and drift as bars against their thresholds,
live metrics per version, and the distributions of every flagged feature side by side. The page is
templates/monitoring_report.html.j2 (pipeline/pages.py: every text escaped); this module picks the
figures out of the result and the window's statistics.
"""
from __future__ import annotations

from typing import Any

from models import features
from pipeline import pages
from pipeline.evaluation import shown

MEASURE_LABELS = {"L_INFINITY": "L∞", "JENSEN_SHANNON_DIVERGENCE": "JS divergence (deciles)", "COMPLETENESS_DROP": "completeness drop"}
SERIES = (("training", "training"), ("previous", "previous window"), ("current", "this window"))
TOP_VALUES = 8  # values of a categorical feature shown, by their largest share


def render(data: dict[str, Any], stats: dict[str, Any]) -> str:
    """The page for monitoring result `data` (result.json's fields) and its statistics by series."""
    return pages.render(
        "monitoring",
        "monitoring_report.html.j2",
        d=data,
        w=data["window"],
        skew=_distances(data["skew"]),
        drift=_distances(data["drift"]),
        measure_labels=MEASURE_LABELS,
        distributions=_distributions(data, stats),
        shown=shown,
        label=features.active().label.name,
    )


def _distances(part: dict[str, Any]) -> dict[str, Any]:
    """`part` with its scores as rows, furthest over the threshold first, each bar's share (100: 2x the threshold)."""
    rows = [
        {**d, "share": min(d["value"] / d["threshold"], 2.0) / 2 * 100 if d["threshold"] else 100}
        for d in sorted(part.get("features", []), key=lambda d: -d["value"] / d["threshold"] if d["threshold"] else 0)
    ]
    return {**part, "rows": rows}


def _feature(stats: Any, name: str) -> Any:
    for feature in stats.datasets[0].features if stats.datasets else []:
        if feature.path.step and feature.path.step[0] == name:
            return feature
    return None


def _distributions(data: dict[str, Any], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Each flagged feature's figures per series: value shares (categorical) or summary and histogram."""
    blocks = []
    for name in sorted(set(data["skew"]["flagged"]) | set(data["drift"]["flagged"])):
        series = [(label, _feature(stats[key], name)) for key, label in SERIES if key in stats]
        series = [(label, f) for label, f in series if f is not None]
        if features.active().raw_types.get(name) == "BYTES":
            blocks.append({"name": name, "kind": "categorical", "shares": _categorical(series)})
        else:
            blocks.append({"name": name, "kind": "numeric", **_numeric(series)})
    return blocks


def _categorical(series: list[tuple[str, Any]]) -> list[tuple[str, list[tuple[str, float]]]]:
    """The top values, each with its share in every series."""
    shares: dict[str, dict[str, float]] = {}
    for label, feature in series:
        total = feature.string_stats.common_stats.num_non_missing or 1
        for bucket in feature.string_stats.rank_histogram.buckets:
            shares.setdefault(bucket.label, {})[label] = bucket.sample_count / total
    top = sorted(shares, key=lambda v: -max(shares[v].values()))[:TOP_VALUES]
    return [(value, [(label, shares[value].get(label, 0)) for label, _ in series]) for value in top]


def _numeric(series: list[tuple[str, Any]]) -> dict[str, list]:
    """Mean, std, min, median and max per series, and each series' standard histogram."""
    numeric = [(label, [f.num_stats.mean, f.num_stats.std_dev, f.num_stats.min, f.num_stats.median, f.num_stats.max])
               for label, f in series]
    histograms = []
    for label, f in series:
        standard = [h for h in f.num_stats.histograms if h.type == h.STANDARD]
        if not standard:
            continue
        buckets = standard[0].buckets
        top = max((b.sample_count for b in buckets), default=0) or 1
        bars = [{"height": b.sample_count / top * 100, "low": b.low_value, "high": b.high_value, "count": b.sample_count}
                for b in buckets]
        low, high = (buckets[0].low_value, buckets[-1].high_value) if buckets else (0, 0)
        histograms.append((label, low, high, bars))
    return {"numeric": numeric, "histograms": histograms}
