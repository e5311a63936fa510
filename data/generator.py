"""Seeded span generator calibrated on the real taxi data, with injectable problems.

    python -m data.generator --span 3 --rows 2000 [--problem fare_drift] [--seed 0]

A normal span is a bootstrap resample of the shipped spans (real joint distribution) with small
multiplicative noise on money, distance and duration. Problems are applied on top:

  fare_drift             fares, tips and trip_miles x1.8 (covariate drift, label kept)
  miles_scale            trip_miles x1.5 (a skewed feature scaled: median 0.9 -> 1.35)
  new_payment_type       20 % of trips paid by an unknown type (schema anomaly)
  vanished_payment_type  no "Credit Card" trips left: they become "Cash" (categorical drift)
  label_shift            credit-card tips cut to 5 % of the fare (far fewer big tippers)
  missing_spike          60 % of trips lose company and dropoff fields (below the completeness floors)
  unit_change            trip_seconds written in milliseconds (a broken feed)
  dropped_column         the fare column is missing (schema breakage)
  wrong_types            trip_seconds written as text (schema breakage)

and feeds whose columns changed meaning under unchanged names (DataGate's plausibility rules):

  swapped_fare_miles     fare and trip_miles swapped (an upstream join)
  swapped_miles_seconds  trip_miles and trip_seconds swapped (miles land in an int column)
  remapped_payment_type  "Cash" and "Credit Card" swapped
  fare_in_cents          fare x100
  miles_in_km            trip_miles x1.609 (a real unit change that looks legitimate)
  dropoff_from_pickup    dropoff_latitude filled from pickup_latitude
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Callable

from data import materialize, spans_io
from models import features

Row = dict[str, str]
NOISY_FLOATS = ("fare", "trip_miles", "tips")
OPTIONAL_BLANKED = ("company", "dropoff_latitude", "dropoff_longitude", "dropoff_community_area", "dropoff_census_tract")


def _scale(row: Row, key: str, factor: float) -> None:
    if row.get(key, "") != "":
        row[key] = repr(round(float(row[key]) * factor, 2))


def _scale_all(rows: list[Row], key: str, factor: float) -> None:
    for row in rows:
        _scale(row, key, factor)


def _fare_drift(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        for key in ("fare", "tips", "trip_miles"):
            _scale(row, key, 1.8)


def _miles_scale(rows: list[Row], rng: random.Random) -> None:
    _scale_all(rows, "trip_miles", 1.5)


def _new_payment_type(rows: list[Row], rng: random.Random) -> None:
    for row in rng.sample(rows, k=len(rows) // 5):
        row["payment_type"] = "Crypto"


def _vanished_payment_type(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        if row["payment_type"] == "Credit Card":
            row["payment_type"] = "Cash"


def _label_shift(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        if row["payment_type"] == "Credit Card" and row["fare"]:
            row["tips"] = repr(round(float(row["fare"]) * 0.05, 2))


def _missing_spike(rows: list[Row], rng: random.Random) -> None:
    for row in rng.sample(rows, k=int(len(rows) * 0.6)):
        for key in OPTIONAL_BLANKED:
            row[key] = ""


def _unit_change(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        if row["trip_seconds"]:
            row["trip_seconds"] = str(int(row["trip_seconds"]) * 1000)


def _dropped_column(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        del row["fare"]


def _wrong_types(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        if row["trip_seconds"]:
            row["trip_seconds"] = f"{row['trip_seconds']} sec"


def _swap(rows: list[Row], first: str, second: str) -> None:
    for row in rows:
        row[first], row[second] = row[second], row[first]


def _remapped_payment_type(rows: list[Row], rng: random.Random) -> None:
    mapping = {"Cash": "Credit Card", "Credit Card": "Cash"}
    for row in rows:
        row["payment_type"] = mapping.get(row["payment_type"], row["payment_type"])


def _dropoff_from_pickup(rows: list[Row], rng: random.Random) -> None:
    for row in rows:
        row["dropoff_latitude"] = row["pickup_latitude"]


PROBLEMS: dict[str, Callable[[list[Row], random.Random], None]] = {
    "fare_drift": _fare_drift,
    "miles_scale": _miles_scale,
    "new_payment_type": _new_payment_type,
    "vanished_payment_type": _vanished_payment_type,
    "label_shift": _label_shift,
    "missing_spike": _missing_spike,
    "unit_change": _unit_change,
    "dropped_column": _dropped_column,
    "wrong_types": _wrong_types,
    "swapped_fare_miles": lambda rows, rng: _swap(rows, "fare", "trip_miles"),
    "swapped_miles_seconds": lambda rows, rng: _swap(rows, "trip_miles", "trip_seconds"),
    "remapped_payment_type": _remapped_payment_type,
    "fare_in_cents": lambda rows, rng: _scale_all(rows, "fare", 100),
    "miles_in_km": lambda rows, rng: _scale_all(rows, "trip_miles", 1.609),
    "dropoff_from_pickup": _dropoff_from_pickup,
}
# Problems whose output cannot be written in the canonical format (the point is to break it).
RAW_PROBLEMS = ("wrong_types", "swapped_miles_seconds")


def generate(reference: list[Row], rows: int, seed: int, problem: str | None = None) -> list[Row]:
    """`rows` trips resampled from `reference`, with `problem` (a key of PROBLEMS) applied."""
    if problem is not None and problem not in PROBLEMS:
        raise ValueError(f"unknown problem {problem!r}; choose from {sorted(PROBLEMS)}")
    rng = random.Random(seed)
    out = []
    for source in rng.choices(reference, k=rows):
        row = {key: spans_io.format_value(key, value) for key, value in source.items()}
        for key in NOISY_FLOATS:
            _scale(row, key, rng.uniform(0.97, 1.03))
        out.append(row)
    if problem:
        PROBLEMS[problem](out, rng)
    return out


def write_generated_span(
    spans_root: Path, span: int, reference: list[Row], rows: int, seed: int, problem: str | None = None
) -> Path:
    generated = generate(reference, rows, seed, problem)
    columns = tuple(c for c in features.active().csv_columns if c in generated[0])
    return spans_io.write_span(spans_root, span, generated, columns=columns, canonical=problem not in RAW_PROBLEMS)


def shipped_reference() -> list[Row]:
    """All trips of the spans shipped in the tfx wheel (the calibration data)."""
    return [row for rel in materialize.SHIPPED_SPANS.values() for row in spans_io.read_rows(materialize.shipped_csv(rel))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans-root", type=Path, default=materialize.DEFAULT_SPANS_ROOT)
    parser.add_argument("--span", type=int, required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--problem", choices=sorted(PROBLEMS))
    args = parser.parse_args()
    path = write_generated_span(args.spans_root, args.span, shipped_reference(), args.rows, args.seed, args.problem)
    print(f"wrote {path} ({args.rows} trips, problem: {args.problem or 'none'})")


if __name__ == "__main__":
    main()
