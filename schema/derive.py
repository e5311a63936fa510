"""Derive the curated schema (schema/schema.pbtxt) and the completeness floors
(schema/completeness.json) from the shipped data.

    python -m schema.derive [--spans-root data/spans] [--out schema/schema.pbtxt]
                            [--completeness-out schema/completeness.json]

1. TFDV infers a schema from the statistics of every span under --spans-root (the same CSV
   decoder CsvExampleGen uses).
2. The curation below is applied, from the active feature contract: domains that state what valid
   data looks like, not just what one sample happened to contain; at most one value per cell;
   which features a serving request must carry; the TRAINING/SERVING environments (the columns
   only the label reads, the taxi's `tips`, are absent at serving time).
3. The natural rate of empty cells is measured per feature on every shipped file (the spans, and
   for the taxi contract data.materialize.SHIPPED_SAMPLE) and turned into completeness floors (see
   COMPLETENESS below), which DataGate applies to each span.

The committed files are this script's output; tests check they stay identical.
Change the rules here, re-run, and review the diff.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from models import features

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.pbtxt"
COMPLETENESS_PATH = Path(__file__).resolve().parent / "completeness.json"
TRAINING, SERVING = "TRAINING", "SERVING"

# Domains (min/max of a number, the values of a string) and the features a serving request may
# omit come from the active feature contract (models/features.py). A required serving feature has
# presence 1.0 (models/instances.py); an optional one's presence floor is its completeness floor
# below: the share of served requests that carry it.

# COMPLETENESS: how many empty cells a span may have, per feature.
#
# In a CSV span a value is missing when its cell is empty. CsvExampleGen turns an empty cell into a
# present feature with no values, so TFDV's presence never sees it; DataGate counts empty cells in
# the span's files instead (data/span_audit.py) and blocks a span when a feature has a value in
# fewer rows than its floor:
#
#     floor = 1 - (VARIATION x natural + TOLERANCE), rounded down to 0.1 %, at least 0
#
# natural    the highest share of empty cells in any WINDOW consecutive trips of a shipped taxi
#            file (spans 1 and 2 and the 15,002-trip sample). The files hold trips in runs: over a
#            whole file dropoff_latitude is empty in 3.9 %, 1.7 % and 3.2 % of trips, but in 15 % of
#            the worst 500 consecutive ones, and dropoff_census_tract in 99 % of them (30 % over the
#            file). A span is such a run of trips, so the floors are set on the worst window, not on
#            the file's average; WINDOW = 500 trips is a small span (the suite's spans have 800 and
#            more), and a larger span is never emptier than its worst 500 trips.
# VARIATION  span 1 and the sample, two independent samples of the feed, agree on their worst
#            window (dropoff 15 % and 15 %, company 41.4 % and 41.4 %); span 2's is lower. A quarter
#            more than the worst window seen is natural; a spike beyond it is not (trip_seconds
#            empty in 62 % of rows, the generator's missing_spike, a feed that drops a column's values).
# TOLERANCE  a small fraction of bad rows, so that one odd trip does not block a span: 1 % of rows
#            may be empty in any feature on top of its natural rate, also in features that are
#            never empty in the shipped data (fare, tips, ...). That is 30 times "one row in 3,000"
#            and 2.5 times the worst natural rate of the pickup fields (2 adjacent trips of the
#            sample, 0.4 % of a 500-trip window). A tolerated row reaches the model with the
#            feature's default value (models/preprocessing.py).
# A feature emptier than 1 / VARIATION in its worst window (dropoff_census_tract, and
# pickup_census_tract, always empty and unused by the model) gets floor 0: it never blocks.
WINDOW = 500
VARIATION = 1.25
TOLERANCE = 0.01

def infer_schema(csv_pattern: str):
    """TFDV's inferred schema for the span files matching `csv_pattern`."""
    import tensorflow_data_validation as tfdv

    stats = tfdv.generate_statistics_from_csv(csv_pattern)
    return tfdv.infer_schema(stats, infer_feature_shape=False)


def curate(schema, floors: dict[str, float]) -> None:
    """Apply the curation rules to `schema` in place (`floors`: completeness floor per feature)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema.default_environment.extend([TRAINING, SERVING])
    contract = features.active()
    kinds = {"INT": schema_pb2.INT, "FLOAT": schema_pb2.FLOAT, "BYTES": schema_pb2.BYTES}
    present = {f.name for f in schema.feature}
    for name, kind in contract.raw_types.items():
        if name not in present:  # a column with no values in the sample gets no inferred entry
            schema.feature.add(name=name, type=kinds[kind])
    for feature in schema.feature:
        name = feature.name
        if feature.type != kinds[contract.raw_types[name]]:
            raise ValueError(f"{name}: inferred {feature.type}, contract says {contract.raw_types[name]}")
        feature.ClearField("domain")
        feature.ClearField("int_domain")
        feature.ClearField("float_domain")
        feature.ClearField("string_domain")
        # A CSV cell holds at most one value; an empty one is kept as no value, so no feature has a
        # fixed shape: a few empty cells are DataGate's to judge, not a shape violation.
        feature.ClearField("shape")
        feature.value_count.min = 0
        feature.value_count.max = 1
        column = contract.column(name)
        if column.optional:
            feature.presence.min_fraction = floors[name]
            feature.presence.min_count = 0
        else:
            feature.presence.min_fraction = 1.0
            feature.presence.min_count = 1
        if column.type != "string" and (column.min is not None or column.max is not None):
            domain = feature.int_domain if column.type == "int" else feature.float_domain
            if column.min is not None:
                domain.min = column.min
            if column.max is not None:
                domain.max = column.max
    del schema.string_domain[:]
    for column in contract.columns:
        if column.values:
            schema.string_domain.add(name=column.name, value=sorted(column.values))
            tfdv.get_feature(schema, column.name).domain = column.name
            tfdv.get_feature(schema, column.name).distribution_constraints.min_domain_mass = 1.0
    for name in contract.label.label_only:
        tfdv.get_feature(schema, name).not_in_environment.append(SERVING)
    schema.feature.sort(key=lambda f: contract.csv_columns.index(f.name))


def _files(spans_root: Path) -> dict[str, Path]:
    """Every shipped file of the active contract, by a label that does not depend on where it lives
    (`span-N`, or `span-N/<file>` for each CSV file of a span that has several; for the taxi
    contract also the sample shipped with tfx, another sample of the same feed)."""
    from data import materialize, spans_io

    files = {}
    for span in spans_io.existing_spans(spans_root):
        found = spans_io.span_files(spans_root, span)
        files.update({f"span-{span}" if len(found) == 1 else f"span-{span}/{path.name}": path for path in found})
    if features.is_default(features.active()):
        files[f"tfx/{materialize.SHIPPED_SAMPLE}"] = materialize.shipped_csv(materialize.SHIPPED_SAMPLE)
    return files


def worst_window(empty: list[bool], window: int = WINDOW) -> float:
    """The highest share of True in any `window` consecutive items (the whole list if shorter)."""
    if len(empty) <= window:
        return sum(empty) / len(empty) if empty else 0.0
    count = worst = sum(empty[:window])
    for i in range(window, len(empty)):
        count += empty[i] - empty[i - window]
        worst = max(worst, count)
    return worst / window


def measure_missing(files: dict[str, Path]) -> dict[str, dict]:
    """label -> rows, and per feature with empty cells: their share of the file and of its worst window."""
    from data import spans_io

    measured = {}
    for label, path in files.items():
        rows = spans_io.read_rows(path)
        empty = {name: [row.get(name, "") == "" for row in rows] for name in features.active().csv_columns}
        measured[label] = {
            "rows": len(rows),
            "missing": {name: round(sum(e) / len(e), 6) for name, e in empty.items() if any(e)},
            f"worst_{WINDOW}_rows": {name: round(worst_window(e), 6) for name, e in empty.items() if any(e)},
        }
    return measured


def floor(natural: float) -> float:
    """The completeness floor for a feature whose natural share of empty cells is `natural`."""
    allowed = VARIATION * natural + TOLERANCE
    return max(0.0, math.floor(round((1 - allowed) * 1000, 6)) / 1000)


def derive_completeness(spans_root: Path) -> dict:
    """The content of completeness.json: what was measured, the rule's constants and the floors."""
    measured = measure_missing(_files(spans_root))
    worst = f"worst_{WINDOW}_rows"
    natural = {name: max(m[worst].get(name, 0.0) for m in measured.values()) for name in features.active().csv_columns}
    return {
        "rule": f"floor = 1 - (variation x natural + tolerance), rounded down to 0.1 %; natural = the highest "
        f"share of empty cells in {WINDOW} consecutive trips of a shipped file; see schema/derive.py",
        "window": WINDOW,
        "variation": VARIATION,
        "tolerance": TOLERANCE,
        "measured": measured,
        "natural_missing": natural,
        "floors": {name: floor(rate) for name, rate in natural.items()},
    }


def load_completeness(path: Path = COMPLETENESS_PATH) -> dict:
    """The committed completeness rules (derive_completeness's output)."""
    return json.loads(Path(path).read_text())


def derive(spans_root: Path, completeness: dict | None = None):
    """The curated schema for the spans under `spans_root` (floors: `completeness`, else derived)."""
    from data import spans_io

    if not spans_io.existing_spans(spans_root):
        raise FileNotFoundError(f"no spans under {spans_root}: run `python -m data.materialize` first")
    completeness = completeness or derive_completeness(spans_root)
    schema = infer_schema(str(Path(spans_root) / spans_io.file_pattern().replace("{SPAN}", "*")))
    curate(schema, completeness["floors"])
    return schema


def main() -> None:
    from tfx.utils import io_utils

    from data.materialize import DEFAULT_SPANS_ROOT

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans-root", type=Path, default=DEFAULT_SPANS_ROOT)
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH)
    parser.add_argument("--completeness-out", type=Path, default=COMPLETENESS_PATH)
    args = parser.parse_args()
    completeness = derive_completeness(args.spans_root)
    io_utils.write_pbtxt_file(str(args.out), derive(args.spans_root, completeness))
    args.completeness_out.write_text(json.dumps(completeness, indent=2) + "\n")
    print(f"wrote {args.out} and {args.completeness_out}")


if __name__ == "__main__":
    main()
