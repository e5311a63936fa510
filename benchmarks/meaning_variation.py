"""How far real spans, legitimate partitions and feeds that changed meaning move: what DataGate's
broken-meaning limit and the contract's plausibility bands must separate.

    python -m benchmarks.meaning_variation [--rows 3000] [--seed 7]

Every candidate span is compared with span 2 of the default spans (the previous validated span
after the two default spans): the shipped spans against each other; partitions of span 1 and of
the shipped sample (one month, weekend, night, a three-hour band, one company, short or long
trips, airport pickups); and spans of the generator (data/generator.py) with a column swapped,
re-mapped, re-scaled or copied. For each it prints the decile JSD of the drift-scored numeric
features, the median shift of fare, trip_miles and trip_seconds, the L-infinity distance of
payment_type and company (pipeline/drift.py), the contract's plausibility measures (data/plausibility.py
through the span audit), and DataGate's verdict (pipeline/validation.py). docs/pipeline.md and the
comments of `broken_meaning_jsd` (pipeline/configs.py) and of models/taxi.toml's [plausibility] record the figures.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd
import tensorflow_data_validation as tfdv

from data import generator, materialize, span_audit, spans_io
from models import features
from pipeline import configs, drift, validation
from schema import derive

Row = dict[str, str]
NUMERIC = ("fare", "trip_miles", "trip_seconds", "tips", "trip_start_hour", "dropoff_latitude")


def _number(row: Row, key: str) -> float:
    return float(row[key]) if row[key] else float("nan")


# Partitions a real feed may deliver as a span of its own (filters over shipped rows).
PARTITIONS: dict[str, Callable[[Row], bool]] = {
    "month 6": lambda r: r["trip_start_month"] == "6",
    "month 12": lambda r: r["trip_start_month"] == "12",
    "weekend": lambda r: r["trip_start_day"] in ("1", "7"),
    "night 0-5h": lambda r: int(r["trip_start_hour"]) < 6,
    "hours 6-8": lambda r: 6 <= int(r["trip_start_hour"]) < 9,
    "hours 18-20": lambda r: 18 <= int(r["trip_start_hour"]) < 21,
    "Taxi Affiliation Services": lambda r: r["company"] == "Taxi Affiliation Services",
    "Dispatch Taxi Affiliation": lambda r: r["company"] == "Dispatch Taxi Affiliation",
    "Blue Ribbon Taxi": lambda r: r["company"] == "Blue Ribbon Taxi Association Inc.",
    "trips < 1 mile": lambda r: _number(r, "trip_miles") < 1,
    "trips >= 3 miles": lambda r: _number(r, "trip_miles") >= 3,
    "airport pickups": lambda r: r["pickup_community_area"] == "76",
}
CHANGED = ("swapped_fare_miles", "swapped_miles_seconds", "remapped_payment_type", "fare_in_cents",
           "miles_in_km", "dropoff_from_pickup")


def statistics(rows: list[Row]):
    """TFDV statistics of the rows: numbers for numeric columns, strings (None when empty) for the rest."""
    types = features.active().raw_types
    frame = {
        column: pd.to_numeric(pd.Series([r.get(column, "") for r in rows]), errors="coerce")
        if types[column] != "BYTES" else pd.Series([r.get(column) or None for r in rows], dtype=object)
        for column in types
    }
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(frame))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000, help="rows of each generated span")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    config = configs.PipelineConfig()
    schema = tfdv.load_schema_text(str(config.schema_uri))
    rules = derive.load_completeness(config.completeness_path)
    domains = validation.domains(schema)
    shipped = {span: spans_io.read_rows(materialize.shipped_csv(rel)) for span, rel in materialize.SHIPPED_SPANS.items()}
    pool = shipped[1] + spans_io.read_rows(materialize.shipped_csv(materialize.SHIPPED_SAMPLE))
    reference = generator.shipped_reference()
    # name -> (rows, written as they are rather than in the canonical format)
    candidates: dict[str, tuple[list[Row], bool]] = {"span 1 (real)": (shipped[1], False)}
    candidates |= {f"partition: {name}": ([r for r in pool if keep(r)], False) for name, keep in PARTITIONS.items()}
    for problem in CHANGED:
        candidates[f"changed: {problem}"] = (generator.generate(reference, args.rows, args.seed, problem), problem in generator.RAW_PROBLEMS)
    with tempfile.TemporaryDirectory() as tmp:
        def audit(span: int, rows: list[Row], raw: bool) -> span_audit.SpanAudit:
            path = spans_io.write_span(Path(tmp), span, rows, canonical=not raw)
            return span_audit.audit([str(path)], lambda name: open(name, "rb"), domains)

        before = audit(2, shipped[2], False)
        previous = validation.Previous(2, before.rows, statistics(shipped[2]), validation.plausibility_measures(before.plausibility))
        for number, (name, (rows, raw)) in enumerate(candidates.items(), start=3):
            now = audit(number, rows, raw)
            current = statistics(rows)
            scores = drift.compare(current, schema, config.drift_thresholds, config.completeness_drop,
                                   median_shift=config.median_shift, previous=previous.statistics)
            shown = {(s.feature, s.measure): s.value for s in scores}
            jsd = " ".join(f"{f}={shown.get((f, drift.JENSEN_SHANNON), float('nan')):.3f}" for f in NUMERIC)
            shift = " ".join(f"{f}={shown.get((f, drift.MEDIAN_SHIFT), float('nan')):.2f}" for f in NUMERIC[:3])
            linf = " ".join(f"{f}={shown.get((f, drift.L_INFINITY), float('nan')):.3f}" for f in ("payment_type", "company"))
            measures = validation.plausibility_measures(now.plausibility)
            problems = validation.check(
                number, now, now.rows, [], rules, schema, current, previous, config.min_rows_ratio,
                config.broken_feed_factor, config.broken_meaning_jsd, config.drift_thresholds,
            )
            print(f"{name} ({len(rows):,} rows)")
            print(f"  JSD {jsd}\n  median shift {shift}\n  L-inf {linf}")
            print("  plausibility " + " ".join(f"{k}={v:.4g}" for k, v in measures.items()))
            print(f"  verdict: {problems[0].kind + ': ' + problems[0].sentence if problems else 'passes'}")


if __name__ == "__main__":
    main()
