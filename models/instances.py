"""Request instances <-> tf.Examples, checked against the feature contract and the schema.

An instance comes as one of:
- raw JSON features (the serving features of the active contract, models/features.py, typed by its columns;
  any other name is refused, so a typo never goes unnoticed): `parse_instance`;
- a serialized tf.Example, as `{"b64": "<base64>"}` in JSON (`parse_instance`) or as bytes
  (`parse_serialized`: gRPC tensors and example lists);
- a TF Serving classify/regress example, `{"feature": value | [value] | {"b64": ...}}`
  (`parse_example_json`), with the request's `context` features merged in.
A tf.Example, in whichever form, may carry features the model does not read (a label, an id):
they are ignored, as the SavedModel's own parsing (and TF Serving) ignores them, and not logged.
Every instance becomes a serialized tf.Example for the SavedModel's signatures and a plain feature
dict for the request log. A bad instance raises InstanceError naming the instance, the feature and
why.

What the model receives is exactly what the client sent, or the request is refused:
- INT features are int64: JSON integers in [-2^63, 2^63), or integral JSON numbers up to 2^53 in
  magnitude (beyond that a double may already be a different integer than the client meant).
- FLOAT features are float32 in the model: a value is rounded to the nearest float32 (relative
  error below 6e-8, as TF Serving does for DT_FLOAT inputs); one that would become infinite or
  zero (|v| > 3.4e38, or a non-zero |v| < 1.4e-45) is refused, as are NaN and infinities.
- BYTES features are UTF-8 text of at most `max_string_bytes` (they are logged verbatim).
- A tf.Example holds at most one value per feature; invalid UTF-8 is refused, not replaced.

Out-of-domain policy (the schema's domains, schema/schema.pbtxt):
- a number outside its feature's int_domain / float_domain (hour -5, a negative fare, a latitude
  outside the Chicago box the data describes) is refused: the transform would map it silently
  (clipped to 0, the edge bucket, bucket 0), so the answer would look valid and mean nothing, and
  the pipeline never trains on such values (DataGate blocks them);
- a string outside its string domain (a new payment type) is predicted on and flagged
  (`Instance.out_of_domain`): the model has out-of-vocabulary buckets for exactly this, it is how
  an upstream vocabulary grows, and refusing it would turn a business change into an outage. The
  server logs the flag with the prediction and counts it in its metrics.
"""
from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features

SERVING_ENVIRONMENT = "SERVING"
DEFAULT_MAX_STRING_BYTES = 1024
EXACT_FLOAT_INT = 2**53  # largest magnitude up to which every integer is an exact double
Value = int | float | str
FeatureDict = dict[str, Value]
_F32 = struct.Struct("<f")


class InstanceError(ValueError):
    """An instance the model cannot be asked about; the message says which and why."""

    too_large = False


class BatchTooLarge(InstanceError):
    too_large = True


@dataclass(frozen=True)
class FeatureRules:
    """What the schema says a serving instance may carry: required features and domains."""

    required: frozenset[str]
    numeric_domains: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    string_domains: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES

    @classmethod
    def from_schema(cls, schema_path: Path, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES) -> "FeatureRules":
        schema = text_format.Parse(Path(schema_path).read_text(), schema_pb2.Schema())
        named_domains = {d.name: frozenset(d.value) for d in schema.string_domain}
        required, numeric, strings = set(), {}, {}
        serving = features.active().serving_features
        for f in schema.feature:
            if f.name not in serving or SERVING_ENVIRONMENT in f.not_in_environment:
                continue
            if f.presence.min_fraction >= 1.0:
                required.add(f.name)
            if f.HasField("int_domain"):
                d = f.int_domain
                numeric[f.name] = (d.min if d.HasField("min") else None, d.max if d.HasField("max") else None)
            elif f.HasField("float_domain"):  # proto floats: compared in float32 (see _float)
                d = f.float_domain
                numeric[f.name] = (d.min if d.HasField("min") else None, d.max if d.HasField("max") else None)
            if f.HasField("domain") and f.domain in named_domains:
                strings[f.name] = named_domains[f.domain]
            elif f.HasField("string_domain"):
                strings[f.name] = frozenset(f.string_domain.value)
        return cls(frozenset(required), numeric, strings, max_string_bytes)


@dataclass(frozen=True)
class Instance:
    serialized: bytes  # a tf.Example for serving_default
    features: FeatureDict  # what the request log records
    out_of_domain: tuple[str, ...] = ()  # string features outside their schema domain (predicted on, flagged)


def parse_instances(payload: Any, rules: FeatureRules, max_instances: int) -> list[Instance]:
    """The `instances` of a row-format predict body (`{"instances": [...]}`); InstanceError when malformed.
    (The server reads every TF Serving shape: serving/rest_formats.py.)"""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InstanceError("request body must be a JSON object with an 'instances' list")
    return [parse_instance(item, rules, i) for i, item in enumerate(checked_batch(payload["instances"], "instances", max_instances))]


def checked_batch(items: Any, key: str, max_instances: int) -> list[Any]:
    """`items` if it is a non-empty list of at most `max_instances`; InstanceError naming `key` otherwise."""
    if not isinstance(items, list) or not items:
        raise InstanceError(f"'{key}' must be a non-empty list")
    if len(items) > max_instances:
        raise BatchTooLarge(f"batch of {len(items)} instances exceeds the limit of {max_instances}")
    return items


def parse_instance(item: Any, rules: FeatureRules, index: int = 0) -> Instance:
    if not isinstance(item, dict):
        raise InstanceError(f"instance {index}: expected a JSON object of features or {{'b64': ...}}")
    if len(item) == 1 and "b64" in item:
        return _from_b64(item["b64"], rules, index)
    feats: FeatureDict = {}
    serving = features.active().serving_features
    for name, value in item.items():
        if name not in serving:
            raise InstanceError(
                f"instance {index}: unknown feature {_show(name)} (serving features: {', '.join(serving)})"
            )
        if value is not None:
            feats[name] = _typed(name, value, index, rules)
    return _checked(feats, rules, index)


def parse_serialized(serialized: bytes, rules: FeatureRules, index: int = 0) -> Instance:
    """A serialized tf.Example (gRPC tensors, example lists), checked as a b64 instance is."""
    try:
        raw = from_example(serialized, frozenset(features.active().serving_features))
    except InstanceError as exc:
        raise InstanceError(f"instance {index}: in the tf.Example, {exc}") from None
    except (ValueError, DecodeError) as exc:
        raise InstanceError(f"instance {index}: not a serialized tf.Example ({exc})") from None
    return _checked(_read_features(raw, rules, index), rules, index)


def parse_example_json(item: Any, rules: FeatureRules, index: int = 0, context: Mapping[str, Any] | None = None) -> Instance:
    """A classify/regress example of TF Serving's JSON API: an object of features, each a value,
    a list of at most one value, or {"b64": ...} for a string; `context` (the request's common
    features) is merged under it. Features the model does not read are ignored, as in a tf.Example."""
    if not isinstance(item, dict):
        raise InstanceError(f"example {index}: expected a JSON object of features, got {type(item).__name__}")
    feats: FeatureDict = {}
    serving = features.active().serving_features
    for name, value in {**(context or {}), **item}.items():
        if name not in serving:
            continue
        value = _single(value, index, name)
        if value is not None:
            feats[name] = _typed(name, _text_of_b64(value, index, name), index, rules)
    return _checked(feats, rules, index)


def _single(value: Any, index: int, name: str) -> Any:
    if not isinstance(value, list):
        return value
    if len(value) > 1:
        raise InstanceError(f"{_where(index, name)} has {len(value)} values; a serving feature takes one")
    return value[0] if value else None


def _text_of_b64(value: Any, index: int, name: str) -> Any:
    """A {"b64": ...} value as the UTF-8 text it encodes (other values unchanged)."""
    if not isinstance(value, dict):
        return value
    if set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise InstanceError(f"{_where(index, name)} must be a value, a list of one value or {{'b64': <base64 string>}}")
    try:
        return base64.b64decode(value["b64"], validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise InstanceError(f"{_where(index, name)}: 'b64' is not base64 of UTF-8 text ({exc})") from None


def from_row(row: Mapping[str, str]) -> FeatureDict:
    """The serving features of a span CSV row, typed by the contract (empty cells are missing)."""
    feats: FeatureDict = {}
    contract = features.active()
    for name in contract.serving_features:
        text = row.get(name, "")
        if text == "":
            continue
        kind = contract.raw_types[name]
        feats[name] = int(float(text)) if kind == "INT" else float(text) if kind == "FLOAT" else text
    return feats


def to_example(feats: FeatureDict) -> bytes:
    """Serialize raw features as a tf.Example typed by the feature contract."""
    from models import examples

    return examples.to_example(feats, feats.keys()).SerializeToString()


def from_example(serialized: bytes, only: frozenset[str] | None = None) -> FeatureDict:
    """The raw features of a serialized tf.Example (those in `only`, if given): one value per
    feature, text decoded as UTF-8.

    Raises InstanceError for a feature with several values or bytes that are not UTF-8 (a value
    silently cut or replaced would not be what the client sent). Empty features are left out.
    """
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(serialized)
    feats: FeatureDict = {}
    for name, feature in example.features.feature.items():
        if only is not None and name not in only:
            continue
        kind = feature.WhichOneof("kind")
        values = getattr(feature, kind).value if kind else ()
        if len(values) > 1:
            raise InstanceError(f"feature {_show(name)} has {len(values)} values; a serving feature takes one")
        if not values:
            continue
        if kind == "bytes_list":
            try:
                feats[name] = values[0].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InstanceError(f"feature {_show(name)} is not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
        else:
            feats[name] = values[0]
    return feats


def _show(value: Any, limit: int = 60) -> str:
    """repr(value), shortened: error messages never echo a huge value back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _typed(name: str, value: Any, index: int, rules: FeatureRules) -> Value:
    kind = features.active().raw_types[name]
    if kind == "BYTES":
        if not isinstance(value, str):
            raise InstanceError(f"{_where(index, name)} must be a string, got {type(value).__name__} {_show(value)}")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InstanceError(f"{_where(index, name)} is not valid Unicode text (a lone surrogate)") from None
        if size > rules.max_string_bytes:
            raise InstanceError(f"{_where(index, name)} is {size} bytes long; the limit is {rules.max_string_bytes}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InstanceError(f"{_where(index, name)} must be a number ({kind}), got {type(value).__name__} {_show(value)}")
    number = _integer(value, index, name) if kind == "INT" else _float(value, index, name)
    domain = rules.numeric_domains.get(name)
    if domain is not None:
        low, high = domain
        compared = number if kind == "INT" else _F32.unpack(_F32.pack(number))[0]
        if (low is not None and compared < low) or (high is not None and compared > high):
            bounds = f"[{_bound(low, '-inf')}, {_bound(high, 'inf')}]"
            raise InstanceError(f"{_where(index, name)} = {_show(value)} is outside the schema's domain {bounds}")
    return number


def _where(index: int, name: str) -> str:
    return f"instance {index}: feature {name!r}"


def _bound(value: float | None, missing: str) -> str:
    if value is None:
        return missing
    return f"{value:g}" if isinstance(value, int) or value.is_integer() else f"{_F32.unpack(_F32.pack(value))[0]:.7g}"


def _integer(value: int | float, index: int, name: str) -> int:
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InstanceError(f"{_where(index, name)} must be an integer, got {_show(value)}")
        if abs(value) > EXACT_FLOAT_INT:
            raise InstanceError(f"{_where(index, name)} = {value!r} is a float beyond 2^53, which may not be the integer meant: send a JSON integer")
        value = int(value)
    if not -(2**63) <= value < 2**63:
        raise InstanceError(f"{_where(index, name)} is out of the int64 range: {_show(value)}")
    return value


def _float(value: int | float, index: int, name: str) -> float:
    try:
        number = float(value)
        rounded = _F32.unpack(_F32.pack(number))[0]
    except OverflowError:
        raise InstanceError(f"{_where(index, name)} = {_show(value)} does not fit a float32 (largest 3.4e38)") from None
    if not math.isfinite(number):
        raise InstanceError(f"{_where(index, name)} must be finite, got {value!r}")
    if rounded == 0.0 and number != 0.0:
        raise InstanceError(f"{_where(index, name)} = {value!r} is too small for a float32 (it would become 0)")
    return number


def _checked(feats: FeatureDict, rules: FeatureRules, index: int) -> Instance:
    missing = rules.required.difference(feats)
    if missing:
        raise InstanceError(f"instance {index}: missing required feature(s) {', '.join(repr(m) for m in sorted(missing))}")
    flagged = tuple(
        name for name, allowed in rules.string_domains.items() if name in feats and feats[name] not in allowed
    )
    return Instance(to_example(feats), feats, flagged)


def _from_b64(text: Any, rules: FeatureRules, index: int) -> Instance:
    if not isinstance(text, str):
        raise InstanceError(f"instance {index}: 'b64' must be a base64 string")
    try:
        serialized = base64.b64decode(text, validate=True)
        raw = from_example(serialized, frozenset(features.active().serving_features))
    except InstanceError as exc:
        raise InstanceError(f"instance {index}: in the tf.Example, {exc}") from None
    except (binascii.Error, ValueError, DecodeError) as exc:
        raise InstanceError(f"instance {index}: 'b64' is not a base64 serialized tf.Example ({exc})") from None
    return _checked(_read_features(raw, rules, index), rules, index)


def _read_features(raw: FeatureDict, rules: FeatureRules, index: int) -> FeatureDict:
    """The serving features of a tf.Example (from_example with the serving features), re-typed by the contract as JSON instances are."""
    return {name: _typed(name, value, index, rules) for name, value in raw.items()}
