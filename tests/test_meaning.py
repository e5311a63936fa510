"""A feed that changed meaning under unchanged names, without a pipeline: the contract's
plausibility rules (data/plausibility.py, measured in the span audit) and the broken-meaning tier
(pipeline/validation.py), on spans that follow span 2 of the default spans.

Changed feeds (data/generator.py) are blocked with a sentence naming both columns; legitimate
partitions of the shipped trips pass; trip_miles in km passes the gate and is reported as drift.
The same verdict through `conveyor run` is in tests/test_data_gate.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tensorflow_data_validation as tfdv

from data import generator, materialize, plausibility, span_audit, spans_io
from models import features
from models.contract import Plausibility
from pipeline import drift, validation
from pipeline.configs import PipelineConfig
from schema import derive
from tests.tft_helpers import load_schema

CONFIG = PipelineConfig()
Row = dict[str, str]


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.fixture(scope="module")
def rules():
    return derive.load_completeness(CONFIG.completeness_path)


def _statistics(rows: list[Row]):
    """TFDV statistics of the numeric columns the broken-feed and broken-meaning rules read."""
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(
        {k: pd.to_numeric(pd.Series([r[k] for r in rows]), errors="coerce") for k in ("fare", "trip_miles", "trip_seconds", "tips")}
    ))


def _audit(path: Path, schema) -> span_audit.SpanAudit:
    return span_audit.audit([str(path)], lambda name: open(name, "rb"), validation.domains(schema))


@pytest.fixture(scope="module")
def span_2(schema) -> validation.Previous:
    """Span 2 of the default spans as DataGate's baseline: statistics and plausibility measures."""
    path = materialize.shipped_csv(materialize.SHIPPED_SPANS[2])
    audit = _audit(path, schema)
    return validation.Previous(2, audit.rows, _statistics(spans_io.read_rows(path)), validation.plausibility_measures(audit.plausibility))


def _check(tmp_path: Path, rows: list[Row], schema, rules, previous, canonical: bool = True) -> list[validation.Problem]:
    audit = _audit(spans_io.write_span(tmp_path, 3, rows, canonical=canonical), schema)
    return validation.check(
        3, audit, audit.rows, [], rules, schema, _statistics(rows), previous, CONFIG.min_rows_ratio,
        CONFIG.broken_feed_factor, CONFIG.broken_meaning_jsd, CONFIG.drift_thresholds,
    )


def _median(rows: list[Row], of: str, per: str, scale: float = 1.0) -> float:
    pairs = [(float(r[of]), float(r[per])) for r in rows if r[of] and r[per] and float(r[per]) > 0]
    return float(np.median([a / b * scale for a, b in pairs]))


def test_span_2_is_measured_by_every_taxi_rule(span_2):
    rows = spans_io.read_rows(materialize.shipped_csv(materialize.SHIPPED_SPANS[2]))
    assert span_2.plausibility["fare_per_mile"] == pytest.approx(_median(rows, "fare", "trip_miles"))
    assert span_2.plausibility["speed_mph"] == pytest.approx(_median(rows, "trip_miles", "trip_seconds", 3600))
    assert span_2.plausibility["cash_tip_share"] == 0.0
    both = [r for r in rows if r["dropoff_latitude"] and r["pickup_latitude"]]
    assert span_2.plausibility["dropoff_is_not_pickup"] == pytest.approx(
        sum(r["dropoff_latitude"] == r["pickup_latitude"] for r in both) / len(both))


@pytest.mark.parametrize("problem, columns, measure", [
    ("swapped_fare_miles", "fare and trip_miles look swapped or re-mapped", "fare per mile has a median of"),
    ("swapped_miles_seconds", "trip_miles and trip_seconds look swapped or re-mapped", "speed mph has a median of"),
    ("remapped_payment_type", "payment_type and tips look swapped or re-mapped", "cash tip share has a median of"),
    ("dropoff_from_pickup", "dropoff_latitude and pickup_latitude look copied or re-mapped",
     "they hold the same value in 100 % of rows in span 3 against 12.1 % in span 2 (limit 50 %)"),
])
def test_a_feed_that_changed_meaning_is_blocked_naming_both_columns(tmp_path, schema, rules, span_2, problem, columns, measure):
    rows = generator.generate(generator.shipped_reference(), 1500, 3, problem)
    problems = _check(tmp_path, rows, schema, rules, span_2, canonical=problem not in generator.RAW_PROBLEMS)
    first = problems[0]
    assert first.kind == validation.IMPLAUSIBLE
    assert first.sentence.startswith(f"{columns}: {measure}") and first.sentence.endswith("; blocked under every drift policy")
    assert validation.blocked_message(3, problems).splitlines()[0].startswith(f"span 3 blocked before training: {columns}: ")


def test_the_swapped_fare_names_its_median_the_previous_spans_and_the_band(tmp_path, schema, rules, span_2):
    rows = generator.generate(generator.shipped_reference(), 1500, 3, "swapped_fare_miles")
    [problem] = _check(tmp_path, rows, schema, rules, span_2)
    assert problem.sentence == (
        f"fare and trip_miles look swapped or re-mapped: fare per mile has a median of "
        f"{validation.number(_median(rows, 'fare', 'trip_miles'))} in span 3 against "
        f"{validation.number(span_2.plausibility['fare_per_mile'])} in span 2 (band 1-100); blocked under every drift policy"
    )
    assert validation.number(span_2.plausibility["fare_per_mile"]) == "4.962"


def test_a_swap_is_judged_without_a_previous_span(tmp_path, schema, rules):
    rows = generator.generate(generator.shipped_reference(), 1500, 3, "swapped_fare_miles")
    [problem] = _check(tmp_path, rows, schema, rules, None)
    assert " in span 3 (band 1-100)" in problem.sentence  # nothing to compare with: the band alone


def test_fare_in_cents_is_a_broken_feed_that_explains_the_broken_ratio(tmp_path, schema, rules, span_2):
    rows = generator.generate(generator.shipped_reference(), 1500, 3, "fare_in_cents")
    problems = _check(tmp_path, rows, schema, rules, span_2)
    assert [(p.kind, p.feature) for p in problems] == [(validation.BROKEN_FEED, "fare")]  # no JSD or fare-per-mile echo


def test_trip_miles_in_km_passes_the_gate_and_is_reported_as_drift(tmp_path, schema, rules, span_2):
    rows = generator.generate(generator.shipped_reference(), 1500, 3, "miles_in_km")
    assert _check(tmp_path, rows, schema, rules, span_2) == []
    scores = drift.compare(_statistics(rows), schema, CONFIG.drift_thresholds, CONFIG.completeness_drop,
                           median_shift=CONFIG.median_shift, previous=span_2.statistics)
    exceeded = {(s.feature, s.measure) for s in scores if s.exceeded}
    assert exceeded == {("trip_miles", drift.MEDIAN_SHIFT)}  # ln 1.609 = 0.48 > 0.25: drift, under the drift policy


PARTITIONS = {
    "one month": lambda r: r["trip_start_month"] == "6",
    "weekend": lambda r: r["trip_start_day"] in ("1", "7"),
    "night": lambda r: int(r["trip_start_hour"]) < 6,
    "three hours": lambda r: 6 <= int(r["trip_start_hour"]) < 9,
    "one company": lambda r: r["company"] == "Taxi Affiliation Services",
    "short trips": lambda r: r["trip_miles"] != "" and float(r["trip_miles"]) < 1,
    "long trips": lambda r: r["trip_miles"] != "" and float(r["trip_miles"]) >= 3,
}


@pytest.mark.parametrize("partition", PARTITIONS)
def test_a_legitimate_partition_passes(tmp_path, shipped_rows, schema, rules, span_2, partition):
    rows = [r for r in shipped_rows if PARTITIONS[partition](r)]
    assert len(rows) >= 600
    assert _check(tmp_path, rows, schema, rules, span_2) == []


def _uniform(low: float, high: float, n: int = 1000):
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame({"fare": np.linspace(low, high, n)}))


def test_values_beyond_the_previous_range_are_a_broken_meaning_the_upper_decile_misses(schema):
    previous = validation.Previous(2, 1000, _uniform(1, 10))
    current = _uniform(9.5, 10.5)  # the upper decile moves x1.1, every value sits in the last decile
    problems = validation._broken_meaning(current, previous, ["fare"], CONFIG.broken_meaning_jsd)
    [problem] = problems
    assert (problem.kind, problem.feature) == (validation.BROKEN_MEANING, "fare")
    assert problem.sentence.startswith("fare no longer looks like the same column: its values score a Jensen-Shannon "
                                       "divergence of 0.7")
    assert problem.sentence.endswith("over span 2's deciles (limit 0.7, far beyond drift); blocked under every drift policy")
    assert validation._broken_meaning(_uniform(2, 11), previous, ["fare"], CONFIG.broken_meaning_jsd) == []


def _tally(rule: Plausibility, **cells: list[str]) -> plausibility.Tally:
    tally = plausibility.Tally(rule)
    tally.add({k: pa.array(v, pa.string()) for k, v in cells.items()})
    return tally


def test_a_ratio_counts_rows_with_both_numbers_and_a_positive_denominator():
    rule = Plausibility("fare_per_mile", "ratio", ("fare", "trip_miles"), 1.0, 100.0)
    tally = _tally(rule, fare=["10", "", "x", "6", "8", "3"], trip_miles=["2", "1", "1", "0", "", "1"])
    assert (tally.rows, tally.value) == (2, 4.0)  # 10/2 and 3/1
    cash = Plausibility("cash_tip_share", "ratio", ("tips", "fare"), 0.0, 0.05, where=("payment_type", "Cash"))
    tally = _tally(cash, tips=["0", "2", "3"], fare=["10", "10", "10"], payment_type=["Cash", "Credit Card", "Cash"])
    assert (tally.rows, tally.value) == (2, pytest.approx(0.15))
    assert _tally(rule, fare=["1"], company=["a"]).value is None  # a column the span lacks: not measured


def test_same_counts_equal_cells_among_rows_with_both():
    rule = Plausibility("dropoff_is_not_pickup", "same", ("dropoff_latitude", "pickup_latitude"), max_share=0.5)
    tally = _tally(rule, dropoff_latitude=["41.9", "41.8", "", "41.7"], pickup_latitude=["41.9", "41.9", "41.9", "41.7"])
    assert (tally.rows, tally.matches, tally.value) == (3, 2, pytest.approx(2 / 3))


def test_a_rule_measured_on_too_few_rows_is_not_judged():
    rule = features.active().plausibility[0]
    few = _tally(rule, fare=["1"] * (validation.MIN_PLAUSIBILITY_ROWS - 1), trip_miles=["10"] * (validation.MIN_PLAUSIBILITY_ROWS - 1))
    assert few.value == 0.1 and validation.plausibility_measures([few]) == {}
