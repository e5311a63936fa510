"""Request instances <-> tf.Examples, checked against the feature contract and the schema.

An instance is either raw JSON features (the SERVING features of models/features.py, typed by
`features.RAW_TYPES`) or `{"b64": "<base64 serialized tf.Example>"}` (its features are read and checked the same
way). Every instance becomes a serialized tf.Example for the SavedModel's `serving_default` and a plain feature dict for the
request log. A bad instance raises InstanceError naming the instance and the feature.
"""
from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features

SERVING_ENVIRONMENT = "SERVING"
Value = int | float | str
FeatureDict = dict[str, Value]


class InstanceError(ValueError):
    """An instance the model cannot be asked about; the message says which and why."""

    too_large = False


class BatchTooLarge(InstanceError):
    too_large = True


@dataclass(frozen=True)
class FeatureRules:
    """Which serving features a request must carry (schema presence 1.0 in SERVING)."""

    required: frozenset[str]

    @classmethod
    def from_schema(cls, schema_path: Path) -> "FeatureRules":
        schema = text_format.Parse(Path(schema_path).read_text(), schema_pb2.Schema())
        required = {
            f.name
            for f in schema.feature
            if f.name in features.SERVING_FEATURES
            and SERVING_ENVIRONMENT not in f.not_in_environment
            and f.presence.min_fraction >= 1.0
        }
        return cls(frozenset(required))


@dataclass(frozen=True)
class Instance:
    serialized: bytes  # a tf.Example for serving_default
    features: FeatureDict  # what the request log records


def parse_instances(payload: Any, rules: FeatureRules, max_instances: int) -> list[Instance]:
    """The `instances` of a TF Serving predict body as tf.Examples; InstanceError when malformed."""
    if not isinstance(payload, dict):
        raise InstanceError("request body must be a JSON object with an 'instances' list")
    if "instances" not in payload:
        raise InstanceError("request body has no 'instances' (only the row format is supported)")
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InstanceError("'instances' must be a non-empty list")
    if len(instances) > max_instances:
        raise BatchTooLarge(f"batch of {len(instances)} instances exceeds the limit of {max_instances}")
    return [parse_instance(item, rules, i) for i, item in enumerate(instances)]


def parse_instance(item: Any, rules: FeatureRules, index: int = 0) -> Instance:
    if isinstance(item, dict) and set(item) == {"b64"}:
        return _from_b64(item["b64"], rules, index)
    if not isinstance(item, dict):
        raise InstanceError(f"instance {index}: expected a JSON object of features or {{'b64': ...}}")
    feats: FeatureDict = {}
    for name, value in item.items():
        if name not in features.SERVING_FEATURES:
            raise InstanceError(f"instance {index}: unknown feature {name!r} (serving features: {', '.join(features.SERVING_FEATURES)})")
        if value is None:
            continue
        feats[name] = _typed(name, value, index)
    _check_required(feats, rules, index)
    return Instance(to_example(feats), feats)


def from_row(row: Mapping[str, str]) -> FeatureDict:
    """The serving features of a span CSV row, typed by the contract (empty cells are missing)."""
    feats: FeatureDict = {}
    for name in features.SERVING_FEATURES:
        text = row.get(name, "")
        if text == "":
            continue
        kind = features.RAW_TYPES[name]
        feats[name] = int(float(text)) if kind == "INT" else float(text) if kind == "FLOAT" else text
    return feats


def to_example(feats: FeatureDict) -> bytes:
    """Serialize raw features as a tf.Example typed by the feature contract."""
    from models import examples

    return examples.to_example(feats, feats.keys()).SerializeToString()


def from_example(serialized: bytes) -> FeatureDict:
    """The raw features of a serialized tf.Example (first value of each feature)."""
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized)
    feats: FeatureDict = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if values:
            feats[name] = values[0].decode("utf-8", "replace") if kind == "bytes_list" else values[0]
    return feats


def _typed(name: str, value: Any, index: int) -> Value:
    kind = features.RAW_TYPES[name]
    where = f"instance {index}: feature {name!r}"
    if kind == "BYTES":
        if not isinstance(value, str):
            raise InstanceError(f"{where} must be a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InstanceError(f"{where} must be a number ({kind}), got {type(value).__name__} {value!r}")
    if kind == "INT":
        if isinstance(value, float) and not value.is_integer():
            raise InstanceError(f"{where} must be an integer, got {value!r}")
        if not -(2**63) <= value < 2**63:
            raise InstanceError(f"{where} is out of the int64 range: {value!r}")
        return int(value)
    if not math.isfinite(value):
        raise InstanceError(f"{where} must be finite, got {value!r}")
    return float(value)


def _check_required(feats: FeatureDict, rules: FeatureRules, index: int) -> None:
    missing = sorted(rules.required - set(feats))
    if missing:
        raise InstanceError(f"instance {index}: missing required feature(s) {', '.join(repr(m) for m in missing)}")


def _from_b64(text: Any, rules: FeatureRules, index: int) -> Instance:
    if not isinstance(text, str):
        raise InstanceError(f"instance {index}: 'b64' must be a base64 string")
    try:
        serialized = base64.b64decode(text, validate=True)
        feats = from_example(serialized)
    except (binascii.Error, ValueError, DecodeError) as exc:
        raise InstanceError(f"instance {index}: 'b64' is not a base64 serialized tf.Example ({exc})") from exc
    for name, value in feats.items():
        if name not in features.SERVING_FEATURES:
            raise InstanceError(f"instance {index}: unknown feature {name!r} in the tf.Example")
        feats[name] = _typed(name, value, index)
    _check_required(feats, rules, index)
    return Instance(to_example(feats), feats)  # re-typed by the contract, as JSON instances are
