"""The feature contract: raw CSV columns, their types, how each is transformed, and the label.

Everything that names a feature (schema curation, preprocessing, the model, serving, slicing)
reads it from here.
"""
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

# What serving_default answers per example (models/model.py builds it, the serving runtime reads it).
PROBABILITY_KEY: Final = "probability"
CLASS_KEY: Final = "predicted_class"

# Features the Evaluator slices by (besides "overall").
SLICE_FEATURES: Final = ("payment_type", "trip_start_hour")


def transformed_name(key: str) -> str:
    """Name of the transformed feature produced from raw feature `key`."""
    return f"{key}_xf"


def is_big_tipper(tips: float, fare: float) -> bool:
    """The label, for Python callers. Compared in float32 like preprocessing_fn (tf.Examples hold
    float32), so a tip of exactly 20 % gets the same label in and out of the graph."""
    import numpy as np

    f32 = np.float32
    return bool(f32(tips) > f32(fare) * f32(BIG_TIPPER_FRACTION))
