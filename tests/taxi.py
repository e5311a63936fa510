"""The taxi contract as the Python constants it was before models/taxi.toml (git 82d1f41,
models/features.py): what tests/test_contract.py checks the file parses into, and the taxi names
tests that exercise the taxi pipeline use."""
from __future__ import annotations

from typing import Final

# Raw numeric features fed to the model after log1p + z-score.
DENSE_FLOAT_FEATURES: Final = ("fare", "trip_miles", "trip_seconds")

# Raw float features bucketized into quantiles.
BUCKET_FEATURES: Final = (
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
)
BUCKET_COUNT: Final = 10

# String features mapped through a vocabulary computed by tf.Transform.
VOCAB_FEATURES: Final = ("payment_type", "company")
VOCAB_SIZE: Final = 1000
OOV_BUCKETS: Final = 10

# Integer features used as categories: name -> number of buckets (values 0..n-1).
CATEGORICAL_INT_FEATURES: Final = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}

# Integer features with large ids, hashed into a fixed number of buckets.
HASHED_FEATURES: Final = {"dropoff_census_tract": 256}

# Raw columns present in the data but not used by the model.
UNUSED_FEATURES: Final = ("trip_start_timestamp", "pickup_census_tract")

# Columns the label is computed from; absent at serving time.
FARE_KEY: Final = "fare"
TIPS_KEY: Final = "tips"
LABEL_KEY: Final = "big_tipper"
BIG_TIPPER_FRACTION: Final = 0.2  # tips > 20 % of the fare

# Raw CSV column -> TF type name as CsvExampleGen infers it ("INT", "FLOAT", "BYTES").
RAW_TYPES: Final = {
    "pickup_community_area": "INT",
    "fare": "FLOAT",
    "trip_start_month": "INT",
    "trip_start_hour": "INT",
    "trip_start_day": "INT",
    "trip_start_timestamp": "INT",
    "pickup_latitude": "FLOAT",
    "pickup_longitude": "FLOAT",
    "dropoff_latitude": "FLOAT",
    "dropoff_longitude": "FLOAT",
    "trip_miles": "FLOAT",
    "pickup_census_tract": "INT",
    "dropoff_census_tract": "INT",
    "payment_type": "BYTES",
    "company": "BYTES",
    "trip_seconds": "INT",
    "dropoff_community_area": "INT",
    "tips": "FLOAT",
}
CSV_COLUMNS: Final = tuple(RAW_TYPES)

# Columns a serving request carries: everything except what the label is derived from.
SERVING_FEATURES: Final = tuple(c for c in CSV_COLUMNS if c != TIPS_KEY)

# Features the model consumes (a subset of the serving features).
MODEL_FEATURES: Final = (
    DENSE_FLOAT_FEATURES
    + BUCKET_FEATURES
    + VOCAB_FEATURES
    + tuple(CATEGORICAL_INT_FEATURES)
    + tuple(HASHED_FEATURES)
)

# Features the Evaluator slices by (besides "overall").
SLICE_FEATURES: Final = ("payment_type", "trip_start_hour")

# pipeline/configs.py's defaults at 82d1f41.
MODEL_NAME: Final = "taxi"
DRIFT_THRESHOLDS: Final = {
    "payment_type": 0.15,
    "company": 0.2,
    "fare": 0.05,
    "trip_miles": 0.05,
    "trip_seconds": 0.05,
    "trip_start_hour": 0.05,
    "tips": 0.04,
    "dropoff_latitude": 0.05,
}
CARD_INTENDED_USE: Final = (
    "Estimate how likely a Chicago taxi trip ends with a tip above 20 % of the fare, from what the meter "
    "records, to study tipping across trips and times; not to judge, price or dispatch individual riders or drivers."
)
CARD_LIMITATIONS: Final = (
    "Trained on the trips of a few spans of one city's taxis; other cities, other years or ride-hailing trips "
    "may tip differently.",
    "The label is the recorded tip, which is only as complete as the payment method records it.",
)
# schema/derive.py's OPTIONAL at 82d1f41.
OPTIONAL: Final = (
    "dropoff_latitude",
    "dropoff_longitude",
    "dropoff_community_area",
    "dropoff_census_tract",
    "company",
    "trip_seconds",
    "pickup_census_tract",
)


def is_big_tipper(tips: float, fare: float) -> bool:
    """The taxi label, compared in float32 like preprocessing_fn (tf.Examples hold float32)."""
    import numpy as np

    f32 = np.float32
    return bool(f32(tips) > f32(fare) * f32(BIG_TIPPER_FRACTION))
