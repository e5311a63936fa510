"""Raw feature rows (CSV text or JSON values) -> serialized tf.Examples typed by the contract."""
from __future__ import annotations

from typing import Iterable, Mapping

import tensorflow as tf

from models import features


def to_example(row: Mapping[str, object], keys: Iterable[str] = features.SERVING_FEATURES) -> tf.train.Example:
    """A tf.Example with the `keys` present in `row`; missing or empty values are left out.

    Raises ValueError naming the feature when a value does not fit its declared type.
    """
    feats = {}
    for key in keys:
        value = row.get(key)
        if value is None or value == "":
            continue
        kind = features.RAW_TYPES[key]
        try:
            if kind == "INT":
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(number)]))
            elif kind == "FLOAT":
                feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
            else:
                feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
        except (TypeError, ValueError):
            raise ValueError(f"feature {key!r} must be {kind.lower()}, got {value!r}") from None
    return tf.train.Example(features=tf.train.Features(feature=feats))


def serialize(rows: Iterable[Mapping[str, object]], keys: Iterable[str] = features.SERVING_FEATURES) -> list[bytes]:
    keys = tuple(keys)
    return [to_example(row, keys).SerializeToString() for row in rows]
