"""report.html: one self-contained page (inline CSS, no scripts) that shows a monitoring result.

Status first, then the window, schema anomalies, skew and drift as bars against their thresholds,
live metrics per version, and the distributions of every flagged feature side by side.
"""
from __future__ import annotations

from html import escape
from typing import Any

from models import features

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.sub{color:#5b6475}.banner{padding:12px 16px;border-radius:8px;font-weight:600;margin:16px 0}
.ok{background:#e3f6e8;color:#135c2a}.alert{background:#fde5e3;color:#8a1c12}.none{background:#fff4d6;color:#6b4e00}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #dde2ea;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}table{border-collapse:collapse;width:100%}
td,th{padding:5px 8px;border-bottom:1px solid #eef1f5;text-align:left;vertical-align:middle}th{color:#5b6475;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}.bar{position:relative;height:12px;background:#eef1f5;border-radius:6px;width:260px}
.fill{position:absolute;left:0;top:0;bottom:0;border-radius:6px;background:#5b8def}.fill.bad{background:#e0533f}
.tick{position:absolute;top:-3px;bottom:-3px;left:50%;border-left:2px solid #1d2330}
.flag{color:#8a1c12;font-weight:600}.muted{color:#8a93a3}
.dist{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:16px}
.hist{display:flex;align-items:flex-end;gap:2px;height:60px;border-bottom:1px solid #c4cad4}
.hist div{flex:1;background:#5b8def;min-height:1px}.series{margin:6px 0 10px}.series span{color:#5b6475;font-size:12px}
.pair{display:flex;align-items:center;gap:6px;font-size:12px}.pair .bar{width:160px;height:9px}
"""
MEASURE_LABELS = {"L_INFINITY": "L∞", "JENSEN_SHANNON_DIVERGENCE": "JS divergence (deciles)", "COMPLETENESS_DROP": "completeness drop"}
SERIES = (("training", "training"), ("previous", "previous window"), ("current", "this window"))


def render(data: dict[str, Any], stats: dict[str, Any]) -> str:
    w = data["window"]
    if data["status"] == "ok":
        status = '<div class="banner ok">OK: no anomalies, skew, drift or live-performance drop</div>'
    elif data["status"] == "no_traffic":
        status = '<div class="banner none">NO TRAFFIC: nothing was served in this window, so nothing could be judged</div>'
    else:
        status = f'<div class="banner alert">ALERT: {escape(", ".join(data["alerts"]))}</div>'
    if data["not_judged"]:
        status += "<p class='muted'>Not judged: " + escape("; ".join(data["not_judged"])) + ".</p>"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Conveyor monitoring: {escape(data['model_name'])} {escape(w['end'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Model {escape(data['model_name'])}: monitoring</h1>",
        f"<div class='sub'>window {escape(w['start'])} to {escape(w['end'])} · pipeline {escape(data['pipeline'])} · created {escape(data['created'])}</div>",
        status,
        "<div class='cards'>",
        _card("predictions in window", w["predictions"]),
        _card("previous window", data["previous_window"]["predictions"]),
        _card("compared model version", data["model_version"] or "-"),
        _card("serving now", data["serving_version"] or "-"),
        _card("labels joined", data["labels"]["joined"]),
        "</div>",
        _anomalies(data["anomalies"]),
        _distances("Training/serving skew", data["skew"]),
        _distances("Drift from the previous window", data["drift"]),
        _live(data),
        _distributions(data, stats),
        "</body></html>",
    ]
    return "\n".join(parts)


def _card(label: str, value: Any) -> str:
    return f"<div class='card'><b>{escape(str(value))}</b><span class='sub'>{escape(label)}</span></div>"


def _anomalies(anomalies: list[dict[str, str]]) -> str:
    if not anomalies:
        return "<h2>Schema (SERVING environment)</h2><p>No anomalies: every feature matches the schema.</p>"
    rows = "".join(
        f"<tr><td class='flag'>{escape(a['feature'])}</td><td>{escape(a['kind'])}</td><td>{escape(a['description'])}</td></tr>"
        for a in anomalies
    )
    return f"<h2>Schema anomalies (SERVING environment)</h2><table><tr><th>feature</th><th>kind</th><th>description</th></tr>{rows}</table>"


def _distances(title: str, part: dict[str, Any]) -> str:
    if not part["available"]:
        return f"<h2>{escape(title)}</h2><p class='muted'>Not judged: {escape(part['reason'])}.</p>"
    rows = []
    for d in sorted(part["features"], key=lambda d: -d["value"] / d["threshold"] if d["threshold"] else 0):
        share = min(d["value"] / d["threshold"], 2.0) / 2 * 100 if d["threshold"] else 100
        cls = " bad" if d["flagged"] else ""
        name = f"<span class='flag'>{escape(d['feature'])}</span>" if d["flagged"] else escape(d["feature"])
        rows.append(
            f"<tr><td>{name}</td><td>{MEASURE_LABELS.get(d['measure'], d['measure'])}</td>"
            f"<td class='num'>{d['value']:.4f}</td><td class='num'>{d['threshold']:.2f}</td>"
            f"<td><div class='bar'><div class='fill{cls}' style='width:{share:.1f}%'></div><div class='tick'></div></div></td></tr>"
        )
    flagged = ", ".join(part["flagged"]) or "none"
    return (
        f"<h2>{escape(title)}</h2><p class='sub'>against {escape(part['baseline'])}; flagged: <b>{escape(flagged)}</b>. "
        "The bar's tick is the threshold.</p>"
        f"<table><tr><th>feature</th><th>measure</th><th class='num'>distance</th><th class='num'>threshold</th><th></th></tr>{''.join(rows)}</table>"
    )


def _live(data: dict[str, Any]) -> str:
    live = data["live_metrics"]
    if not live:
        return f"<h2>Live metrics</h2><p class='muted'>No predictions to join labels to ({data['labels']['files']} label files).</p>"

    def number(value: float | None, digits: str = ".4f") -> str:
        return "-" if value is None else format(value, digits)

    rows = "".join(
        f"<tr><td>{escape(v)}</td><td class='num'>{m['predictions']}</td><td class='num'>{m['labeled']}</td>"
        f"<td class='num'>{number(m['accuracy'])}</td><td class='num'>{number(m['offline_accuracy'])}</td>"
        f"<td class='num'>{number(m['auc'])}</td><td class='num'>{_offline(m, 'auc')}</td>"
        f"<td class='num'>{number(m['positive_rate'], '.3f')}</td><td class='num'>{number(m['mean_probability'], '.3f')}</td>"
        f"<td class='{'flag' if m['state'] == 'low' else ''}'>{escape(m['state'])}{': ' + escape('; '.join(m['reasons'])) if m['reasons'] else ''}</td></tr>"
        for v, m in live.items()
    )
    first = next(iter(live.values()))
    return (
        "<h2>Live metrics (labels that arrived)</h2>"
        f"<p class='sub'>Accuracy needs {escape(str(first['floor']))} or more and no more than {escape(str(first['max_drop']))} "
        "below the version's offline (Evaluator) accuracy; it is computed only on enough labels, AUC only with enough of each class.</p>"
        "<table><tr><th>model version</th><th class='num'>predictions</th><th class='num'>labelled</th>"
        "<th class='num'>accuracy</th><th class='num'>offline accuracy</th><th class='num'>AUC</th><th class='num'>offline AUC</th>"
        "<th class='num'>big-tipper rate</th><th class='num'>mean probability</th><th>verdict</th></tr>"
        f"{rows}</table>"
    )


def _offline(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get("evaluation", {}).get(name)
    return "-" if value is None else f"{value:.4f}"


def _feature(stats: Any, name: str) -> Any:
    for feature in stats.datasets[0].features if stats.datasets else []:
        if feature.path.step and feature.path.step[0] == name:
            return feature
    return None


def _distributions(data: dict[str, Any], stats: dict[str, Any]) -> str:
    flagged = sorted(set(data["skew"]["flagged"]) | set(data["drift"]["flagged"]))
    if not flagged:
        return ""
    blocks = []
    for name in flagged:
        series = [(label, _feature(stats[key], name)) for key, label in SERIES if key in stats]
        series = [(label, f) for label, f in series if f is not None]
        body = _categorical(series) if features.RAW_TYPES.get(name) == "BYTES" else _numeric(series)
        blocks.append(f"<div><h3>{escape(name)}</h3>{body}</div>")
    return f"<h2>Distributions of the flagged features</h2><div class='dist'>{''.join(blocks)}</div>"


def _categorical(series: list[tuple[str, Any]]) -> str:
    shares: dict[str, dict[str, float]] = {}
    for label, feature in series:
        total = feature.string_stats.common_stats.num_non_missing or 1
        for bucket in feature.string_stats.rank_histogram.buckets:
            shares.setdefault(bucket.label, {})[label] = bucket.sample_count / total
    top = sorted(shares, key=lambda v: -max(shares[v].values()))[:8]
    rows = []
    for value in top:
        bars = "".join(
            f"<div class='pair'><span style='width:90px'>{escape(label)}</span><div class='bar'>"
            f"<div class='fill' style='width:{shares[value].get(label, 0) * 100:.1f}%'></div></div>"
            f"{shares[value].get(label, 0) * 100:.1f}%</div>"
            for label, _ in series
        )
        rows.append(f"<div class='series'><b>{escape(value)}</b>{bars}</div>")
    return "".join(rows)


def _numeric(series: list[tuple[str, Any]]) -> str:
    out = ["<table><tr><th></th><th class='num'>mean</th><th class='num'>std</th><th class='num'>min</th><th class='num'>median</th><th class='num'>max</th></tr>"]
    for label, f in series:
        s = f.num_stats
        out.append(
            f"<tr><td>{escape(label)}</td>"
            + "".join(f"<td class='num'>{v:.4g}</td>" for v in (s.mean, s.std_dev, s.min, s.median, s.max))
            + "</tr>"
        )
    out.append("</table>")
    for label, f in series:
        standard = [h for h in f.num_stats.histograms if h.type == h.STANDARD]
        if not standard:
            continue
        buckets = standard[0].buckets
        top = max((b.sample_count for b in buckets), default=0) or 1
        bars = "".join(f"<div style='height:{b.sample_count / top * 100:.0f}%' title='{b.low_value:.4g} to {b.high_value:.4g}: {b.sample_count:.0f}'></div>" for b in buckets)
        lo, hi = (buckets[0].low_value, buckets[-1].high_value) if buckets else (0, 0)
        out.append(f"<div class='series'><span>{escape(label)}: {lo:.4g} to {hi:.4g}</span><div class='hist'>{bars}</div></div>")
    return "".join(out)
