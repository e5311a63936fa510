"""Raw feature rows (CSV text or JSON values) -> serialized tf.Examples typed by the contract."""
from __future__ import annotations

from typing import Iterable, Mapping

from tensorflow.core.example import example_pb2

from models import features


def to_example(row: Mapping[str, object], keys: Iterable[str] | None = None) -> example_pb2.Example:
    """A tf.Example with the `keys` (default: the serving features) present in `row`; missing or
    empty values are left out.

    Integers stay exact (an int, or text like "17031081500", is never routed through a float).
    Raises ValueError naming the feature when a value does not fit its declared type.
    """
    contract = features.active()
    example = example_pb2.Example()
    feature_map = example.features.feature
    for key in contract.serving_features if keys is None else keys:
        value = row.get(key)
        if value is None or value == "":
            continue
        kind = contract.raw_types[key]
        try:
            if kind == "INT":
                feature_map[key].int64_list.value.append(_integer(value))
            elif kind == "FLOAT":
                feature_map[key].float_list.value.append(float(value))
            else:
                feature_map[key].bytes_list.value.append(str(value).encode())
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"feature {key!r} must be {kind.lower()}, got {value!r}") from None
    return example


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass  # "3.0": a CSV writer that printed an integer as a float
    number = float(value)
    if not number.is_integer():
        raise ValueError
    return int(number)

