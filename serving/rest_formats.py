"""TF Serving's REST bodies for this model: what a predict, classify or regress request holds, and
how its answer is written (TF Serving's http_rest_api_handler and json_tensor behaviour).

Predict (`:predict`), one of (both is refused, as TF Serving refuses the ambiguity):
    {"instances": [row, ...]}     row format   -> {"predictions": [answer, ...]}
    {"inputs": column}            columnar     -> {"outputs": {output: [values]}} (one output: {"outputs": [values]})
A row is an instance (models/instances.py: raw features or {"b64": tf.Example}) or the signature's
one named input holding one, `{"examples": {"b64": ...}}` ("inputs" for classification and
regression). A column is a list of instances, `{"<input name>": [...]}`, or raw features by
column, `{"fare": [12.5, 7.0], "trip_miles": [...], ...}`. An answer is an object of the
signature's outputs, or the bare value when it has one output (regression).

Classify and regress (`:classify`, `:regress`):
    {"examples": [{feature: value | [value] | {"b64": ...}}, ...], "context": {...}}
    -> {"result": [[["0", score], ["1", score]], ...]}  or  {"result": [value, ...]}

Any of them may name a signature (`signature_name`); models/signatures.py says which serve what.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from models import signatures
from models.instances import FeatureRules, Instance, InstanceError, checked_batch, parse_example_json, parse_instance

PREDICT, CLASSIFY, REGRESS = "predict", "classify", "regress"


@dataclass(frozen=True)
class Asked:
    """A request body read: the method, the signature_name sent (None: the method's default),
    the instances and, for predict, whether the answer is columnar."""

    method: str
    signature: str | None
    instances: list[Instance]
    columnar: bool = False


def signature_name(payload: Any) -> str | None:
    """The signature_name a body names (None: the method's default); InstanceError if the body is not an object."""
    if not isinstance(payload, dict):
        raise InstanceError(f"request body must be a JSON object, got {type(payload).__name__}")
    signature = payload.get("signature_name")
    if signature is not None and not isinstance(signature, str):
        raise InstanceError("'signature_name' must be a string")
    return signature


def read(method: str, payload: Any, rules: FeatureRules, max_instances: int,
         check: Callable[[str | None], str] | None = None) -> Asked:
    """The body of a `method` request; InstanceError (naming the key, instance and feature) when
    malformed. `check` (if given) resolves the signature_name before the instances are read, as
    TF Serving does (raising what it raises)."""
    signature = signature_name(payload)
    if check is not None:
        check(signature)
    if method == PREDICT:
        return _predict(payload, signature, rules, max_instances)
    if "examples" not in payload:
        raise InstanceError(f"when the method is {method}, key 'examples' is expected and was not found")
    context = payload.get("context")
    if context is not None and not isinstance(context, dict):
        raise InstanceError("'context' must be a JSON object of features")
    examples = checked_batch(payload["examples"], "examples", max_instances)
    return Asked(method, signature, [parse_example_json(item, rules, i, context) for i, item in enumerate(examples)])


def _predict(payload: dict, signature: str | None, rules: FeatureRules, max_instances: int) -> Asked:
    rows, columns = payload.get("instances"), payload.get("inputs")
    if "instances" in payload and "inputs" in payload:
        raise InstanceError("expecting only one of 'inputs' (columnar format) or 'instances' (row format), not both")
    input_name = signatures.INPUTS.get(signature or signatures.DEFAULT, signatures.INPUTS[signatures.DEFAULT])
    if "instances" in payload:
        items = checked_batch(rows, "instances", max_instances)
        return Asked(PREDICT, signature, [_row(item, input_name, rules, i) for i, item in enumerate(items)])
    if "inputs" not in payload:
        raise InstanceError("missing 'inputs' (columnar format) or 'instances' (row format)")
    if isinstance(columns, dict) and not _is_b64(columns):
        if input_name in columns:
            columns = columns[input_name]
        else:
            return Asked(PREDICT, signature, _feature_columns(columns, input_name, rules, max_instances), columnar=True)
    if not isinstance(columns, list):
        raise InstanceError(f"'inputs' must be a list of instances (the input {input_name!r} takes a batch), "
                            f"an object {{{input_name!r}: [...]}} or raw features by column")
    items = checked_batch(columns, "inputs", max_instances)
    return Asked(PREDICT, signature, [parse_instance(item, rules, i) for i, item in enumerate(items)], columnar=True)


def _row(item: Any, input_name: str, rules: FeatureRules, index: int) -> Instance:
    """An instance of the row format, unwrapped from its named input if it comes in one."""
    if isinstance(item, dict) and input_name in item:
        if len(item) != 1:
            others = ", ".join(repr(k) for k in list(item)[:5] if k != input_name)
            raise InstanceError(f"instance {index}: the signature has one input, {input_name!r}; also got {others}")
        item = item[input_name]
        if not _is_b64(item):
            raise InstanceError(f"instance {index}: input {input_name!r} must be {{'b64': <base64 serialized tf.Example>}}")
    return parse_instance(item, rules, index)


def _feature_columns(columns: dict, input_name: str, rules: FeatureRules, max_instances: int) -> list[Instance]:
    """Raw features by column ({"fare": [...], ...}, lists of one length) as instances."""
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if not columns or -1 in lengths:
        raise InstanceError(f"'inputs' must hold the input {input_name!r} or raw features by column (a list each)")
    if len(lengths) != 1:
        raise InstanceError(f"the columns of 'inputs' have different lengths: {sorted(lengths)}")
    count = lengths.pop()
    checked_batch([None] * count, "inputs", max_instances)
    return [parse_instance({name: values[i] for name, values in columns.items()}, rules, i) for i in range(count)]


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def answer(asked: Asked, signature: str, outputs: list[dict]) -> dict[str, Any]:
    """The response body for `asked`, answered by `signature` with serving_default's `outputs`."""
    if signature == signatures.DEFAULT and asked.method == PREDICT and not asked.columnar:
        return {"predictions": outputs}  # serving_default's answers as they are (the common case)
    answers = [signatures.answer(signature, o) for o in outputs]
    if asked.method == CLASSIFY:
        return {"result": [list(zip(a[signatures.CLASSES], a[signatures.SCORES])) for a in answers]}
    if asked.method == REGRESS:
        return {"result": [a[signatures.OUTPUTS] for a in answers]}
    names = list(answers[0])
    if asked.columnar:
        columns = {name: [a[name] for a in answers] for name in names}
        return {"outputs": columns if len(names) > 1 else columns[names[0]]}
    return {"predictions": answers if len(names) > 1 else [a[names[0]] for a in answers]}
