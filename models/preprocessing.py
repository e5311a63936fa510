"""tf.Transform preprocessing_fn: raw taxi features -> model inputs and the label.

Runs inside Transform (full-pass analyzers over the training window) and, as a graph, inside the
served model, so training and serving share one definition of every feature.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from models import features


def _dense(value: tf.Tensor | tf.SparseTensor, default: int | float | str) -> tf.Tensor:
    """A [batch] tensor from a dense [batch, 1] or sparse [batch, 1] feature, missing -> default."""
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(
            tf.SparseTensor(value.indices, value.values, [value.dense_shape[0], 1]),
            default_value=default,
        )
    return tf.reshape(value, [-1])


def _default_for(dtype: tf.DType) -> int | float | str:
    if dtype == tf.string:
        return ""
    return 0.0 if dtype.is_floating else 0


def label(fare: tf.Tensor, tips: tf.Tensor) -> tf.Tensor:
    """1 if the tip exceeds BIG_TIPPER_FRACTION of the fare, else 0 (int64)."""
    return tf.cast(tf.greater(tips, fare * features.BIG_TIPPER_FRACTION), tf.int64)


def preprocessing_fn(inputs: dict[str, tf.Tensor | tf.SparseTensor]) -> dict[str, tf.Tensor]:
    """Map raw features to transformed features (see models/features.py for the contract)."""
    raw = {key: _dense(value, _default_for(value.dtype)) for key, value in inputs.items()}
    outputs: dict[str, tf.Tensor] = {}

    for key in features.DENSE_FLOAT_FEATURES:
        # Mean and variance in float64: Beam sums partial results in whatever order its bundles
        # finish, which in float32 moves the z-scores by ~5e-7 from run to run; in float64 the
        # difference is far below float32's resolution, so every run writes the same values.
        value = tf.math.log1p(tf.maximum(tf.cast(raw[key], tf.float64), 0.0))
        outputs[features.transformed_name(key)] = tf.cast(tft.scale_to_z_score(value), tf.float32)

    for key in features.BUCKET_FEATURES:
        outputs[features.transformed_name(key)] = tft.bucketize(
            tf.cast(raw[key], tf.float32), features.BUCKET_COUNT
        )

    for key in features.VOCAB_FEATURES:
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            tf.strings.strip(raw[key]),
            top_k=features.VOCAB_SIZE,
            num_oov_buckets=features.OOV_BUCKETS,
            vocab_filename=key,
        )

    for key, buckets in features.CATEGORICAL_INT_FEATURES.items():
        # Values outside [0, buckets) (invalid or missing) go to bucket 0.
        value = tf.cast(raw[key], tf.int64)
        in_range = tf.logical_and(value >= 0, value < buckets)
        outputs[features.transformed_name(key)] = tf.where(in_range, value, tf.zeros_like(value))

    for key, buckets in features.HASHED_FEATURES.items():
        outputs[features.transformed_name(key)] = tf.strings.to_hash_bucket_fast(
            tf.strings.as_string(raw[key]), buckets
        )

    # At serving time `tips` is absent; TFT's layer then prunes this output.
    outputs[features.LABEL_KEY] = label(
        tf.cast(raw[features.FARE_KEY], tf.float32), tf.cast(raw[features.TIPS_KEY], tf.float32)
    )
    return outputs
