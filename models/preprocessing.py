"""tf.Transform preprocessing_fn: raw features -> model inputs and the label, by the feature contract.

Runs inside Transform (full-pass analyzers over the training window) and, as a graph, inside the
served model, so training and serving share one definition of every feature.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models.contract import Contract, Feature


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


def label(contract: Contract, raw: dict[str, tf.Tensor]) -> tf.Tensor:
    """The contract's label (int64 0/1, or the class index; -1 for a value outside the classes, which
    DataGate's schema refuses first) from the raw columns it reads."""
    rule = contract.label
    if rule.multiclass:
        value = raw[rule.column]
        value = tf.strings.strip(value) if value.dtype == tf.string else tf.cast(value, tf.int64)
        matches = tf.equal(tf.expand_dims(value, 1), tf.constant([list(rule.classes)], dtype=value.dtype))
        return tf.where(tf.reduce_any(matches, axis=1), tf.argmax(tf.cast(matches, tf.int64), axis=1), tf.constant(-1, tf.int64))
    if rule.kind == "column":
        value = raw[rule.column]
        if rule.positive and value.dtype == tf.string:
            return tf.cast(tf.equal(tf.strings.strip(value), rule.positive), tf.int64)
        if rule.positive:
            return tf.cast(tf.equal(tf.cast(value, tf.int64), int(rule.positive)), tf.int64)
        return tf.cast(tf.equal(tf.cast(value, tf.int64), 1), tf.int64)
    of, value = tf.cast(raw[rule.of], tf.float32), tf.cast(raw[rule.value], tf.float32)
    return tf.cast(tf.greater(value, of * rule.fraction), tf.int64)


def preprocessing_fn(
    inputs: dict[str, tf.Tensor | tf.SparseTensor], custom_config: dict[str, Any] | None = None
) -> dict[str, tf.Tensor]:
    """Map raw features to transformed features and the label, as the contract says (the active one,
    or the one Transform's custom_config names: models/features.py)."""
    contract = features.activate_from(custom_config)
    raw = {key: _dense(value, _default_for(value.dtype)) for key, value in inputs.items()}
    outputs: dict[str, tf.Tensor] = {}
    for feature in contract.features:
        outputs[features.transformed_name(feature.name)] = _transformed(feature, raw[feature.name])
    # At serving time the label's own columns are absent; TFT's layer then prunes this output.
    outputs[contract.label.name] = label(contract, raw)
    return outputs


def _transformed(feature: Feature, value: tf.Tensor) -> tf.Tensor:
    if feature.transform in ("zscore_log1p", "zscore"):
        # Mean and variance in float64: Beam sums partial results in whatever order its bundles
        # finish, which in float32 moves the z-scores by ~5e-7 from run to run; in float64 the
        # difference is far below float32's resolution, so every run writes the same values.
        value = tf.cast(value, tf.float64)
        if feature.transform == "zscore_log1p":
            value = tf.math.log1p(tf.maximum(value, 0.0))
        return tf.cast(tft.scale_to_z_score(value), tf.float32)
    if feature.transform == "quantile_buckets":
        return tft.bucketize(tf.cast(value, tf.float32), feature.buckets)
    if feature.transform == "vocabulary":
        return tft.compute_and_apply_vocabulary(
            tf.strings.strip(value), top_k=feature.top_k, num_oov_buckets=feature.oov, vocab_filename=feature.name
        )
    if feature.transform == "category":
        # Values outside [0, buckets) (invalid or missing) go to bucket 0.
        value = tf.cast(value, tf.int64)
        in_range = tf.logical_and(value >= 0, value < feature.buckets)
        return tf.where(in_range, value, tf.zeros_like(value))
    return tf.strings.to_hash_bucket_fast(tf.strings.as_string(value) if value.dtype != tf.string else value, feature.buckets)
