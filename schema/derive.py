"""Derive the curated schema (schema/schema.pbtxt) from the default spans.

    python -m schema.derive [--spans-root data/spans] [--out schema/schema.pbtxt]

1. TFDV infers a schema from the statistics of every span under --spans-root (the same CSV
   decoder CsvExampleGen uses), with feature shapes for always-present features.
2. The curation below is applied: domains and presence floors that state what valid taxi data
   looks like, not just what one sample happened to contain, and the TRAINING/SERVING environments
   (the label source `tips` is absent at serving time).

The committed schema.pbtxt is this script's output; tests check the two stay identical.
Change the rules here, re-run, and review the diff.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from models import features

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.pbtxt"
TRAINING, SERVING = "TRAINING", "SERVING"

# Integer ranges that hold for any valid trip.
INT_DOMAINS = {
    "trip_start_hour": (0, 23),
    "trip_start_day": (1, 7),
    "trip_start_month": (1, 12),
    "pickup_community_area": (1, 77),
    "dropoff_community_area": (1, 77),
    "trip_seconds": (0, None),
}
# Float ranges: Chicago's bounding box, and non-negative money and distance.
FLOAT_DOMAINS = {
    "pickup_latitude": (41.6, 42.1),
    "dropoff_latitude": (41.6, 42.1),
    "pickup_longitude": (-88.0, -87.5),
    "dropoff_longitude": (-88.0, -87.5),
    "fare": (0.0, None),
    "trip_miles": (0.0, None),
    "tips": (0.0, None),
}
# Known payment types (all values in the Chicago-taxi samples shipped with tfx). A new value is an
# anomaly: the model has never seen it and it usually means an upstream change.
PAYMENT_TYPES = ("Cash", "Credit Card", "Dispute", "No Charge", "Pcard", "Prcard", "Unknown", "Mobile", "Prepaid")
# Optional features: minimum fraction of examples that must carry the feature. CsvExampleGen keeps
# an empty cell as an empty value list (present, 0 values), so a floor catches a column that
# vanishes from the data; a spike of empty cells is the drift check's job. Features not listed are
# required: present with exactly one value in every example.
PRESENCE_FLOORS = {
    "dropoff_latitude": 0.9,
    "dropoff_longitude": 0.9,
    "dropoff_community_area": 0.9,
    "dropoff_census_tract": 0.5,
    "company": 0.5,
    "trip_seconds": 0.99,
    "pickup_census_tract": 0.0,
}


def infer_schema(csv_pattern: str):
    """TFDV's inferred schema for the span files matching `csv_pattern`."""
    import tensorflow_data_validation as tfdv

    stats = tfdv.generate_statistics_from_csv(csv_pattern)
    return tfdv.infer_schema(stats, infer_feature_shape=True)


def curate(schema) -> None:
    """Apply the curation rules to `schema` in place."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema.default_environment.extend([TRAINING, SERVING])
    kinds = {"INT": schema_pb2.INT, "FLOAT": schema_pb2.FLOAT, "BYTES": schema_pb2.BYTES}
    present = {f.name for f in schema.feature}
    for name, kind in features.RAW_TYPES.items():
        if name not in present:  # a column with no values in the sample gets no inferred entry
            schema.feature.add(name=name, type=kinds[kind])
    for feature in schema.feature:
        name = feature.name
        if feature.type != kinds[features.RAW_TYPES[name]]:
            raise ValueError(f"{name}: inferred {feature.type}, contract says {features.RAW_TYPES[name]}")
        feature.ClearField("domain")
        feature.ClearField("int_domain")
        feature.ClearField("float_domain")
        feature.ClearField("string_domain")
        if name in PRESENCE_FLOORS:
            feature.ClearField("shape")
            feature.presence.min_fraction = PRESENCE_FLOORS[name]
            feature.presence.min_count = 0
            feature.value_count.min = 0  # CsvExampleGen writes an empty cell as an empty value list
            feature.value_count.max = 1
        else:
            feature.ClearField("value_count")
            feature.shape.ClearField("dim")
            feature.shape.dim.add(size=1)
            feature.presence.min_fraction = 1.0
            feature.presence.min_count = 1
        if name in INT_DOMAINS:
            low, high = INT_DOMAINS[name]
            feature.int_domain.min = low
            if high is not None:
                feature.int_domain.max = high
        if name in FLOAT_DOMAINS:
            low, high = FLOAT_DOMAINS[name]
            feature.float_domain.min = low
            if high is not None:
                feature.float_domain.max = high
    del schema.string_domain[:]
    schema.string_domain.add(name="payment_type", value=sorted(PAYMENT_TYPES))
    tfdv.get_feature(schema, "payment_type").domain = "payment_type"
    tfdv.get_feature(schema, "payment_type").distribution_constraints.min_domain_mass = 1.0
    tfdv.get_feature(schema, features.TIPS_KEY).not_in_environment.append(SERVING)
    schema.feature.sort(key=lambda f: features.CSV_COLUMNS.index(f.name))


def derive(spans_root: Path):
    from data import spans_io

    if not spans_io.existing_spans(spans_root):
        raise FileNotFoundError(f"no spans under {spans_root}: run `python -m data.materialize` first")
    schema = infer_schema(str(Path(spans_root) / f"{spans_io.SPAN_DIR_PREFIX}*" / spans_io.SPAN_FILE))
    curate(schema)
    return schema


def main() -> None:
    from data.materialize import DEFAULT_SPANS_ROOT
    from tfx.utils import io_utils

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans-root", type=Path, default=DEFAULT_SPANS_ROOT)
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args()
    io_utils.write_pbtxt_file(str(args.out), derive(args.spans_root))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
