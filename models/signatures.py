"""The exported signatures a TF Serving client may name, and what each answers.

    serving_default  predict   examples: serialized tf.Example -> probability, predicted_class
    classification   classify  inputs: serialized tf.Example -> classes ["0", "1"], scores [1 - p, p]
    regression       regress   inputs: serialized tf.Example -> outputs p
    transform_features (predict; the Evaluator's, not served)

A multi-class model (the contract's kind "classes") answers `probabilities` (one per class, in the
contract's order) instead of `probability`, classifies into every class (`classes`: the class
values as strings, `scores`: their probabilities) and has no regression signature.

A binary classifier exported by TF Estimators carried a classification and a regression
signature beside the predict one; TF Serving answers `:classify` and `:regress` only through
signatures whose method_name says so, which `tf.saved_model.save` cannot set (every signature it
writes is a predict one), so `set_method_names` rewrites them in saved_model.pb after the export.

The server answers all three from one model call (serving_default's probability), through the
functions below; `graph_outputs` builds the same outputs in the exported graph, and
tests/test_model.py checks that both give the same bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models import features
from models.features import CLASS_KEY, PROBABILITIES_KEY, PROBABILITY_KEY

PREDICT, CLASSIFY, REGRESS = "tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress"
DEFAULT = "serving_default"
CLASSIFICATION = "classification"
REGRESSION = "regression"
TRANSFORM = "transform_features"
METHODS = {DEFAULT: PREDICT, CLASSIFICATION: CLASSIFY, REGRESSION: REGRESS}  # the signatures served
INPUTS = {DEFAULT: "examples", CLASSIFICATION: "inputs", REGRESSION: "inputs"}  # each one's single input
DEFAULT_FOR = {"predict": DEFAULT, "classify": CLASSIFICATION, "regress": REGRESSION}  # signature_name left out
CLASSES, SCORES, OUTPUTS = "classes", "scores", "outputs"  # TF Serving's output names
_NEEDS = {"classify": CLASSIFY, "regress": REGRESS}  # the method a signature must have for these
_ONE = np.float32(1.0)


class SignatureError(LookupError):
    """A signature this version does not serve for the method asked (the message says why)."""


def resolve(method: str, name: str | None, available: set[str] | frozenset[str]) -> str:
    """The signature `name` (or the method's default) names for `method` ("predict", "classify",
    "regress"), if this version has it and it fits the method; SignatureError otherwise.

    TF Serving answers `:classify` and `:regress` without a signature_name through serving_default,
    which here is a predict signature (refused there); they answer through the classification and
    regression signatures instead, so a client written for an Estimator's classifier works unchanged.
    """
    chosen = name or DEFAULT_FOR[method]
    if chosen == DEFAULT and method == "predict" and chosen in available:  # the common case
        return chosen
    if chosen not in available:
        served = ", ".join(n for n in METHODS if n in available)
        why = " (it is the Evaluator's, reading training features)" if chosen == TRANSFORM else ""
        raise SignatureError(f"serving signature name {chosen!r} not found{why}; this version serves: {served}")
    wanted = _NEEDS.get(method)
    if wanted is not None and METHODS[chosen] != wanted:
        raise SignatureError(f"signature {chosen!r} is a {METHODS[chosen]} signature; :{method} needs a {wanted} one")
    return chosen


def answer(signature: str, output: dict[str, Any]) -> dict[str, Any]:
    """What `signature` answers for one instance, from serving_default's `output` for it (the classes
    named as the active contract's label names them: `Label.class_names`)."""
    class_names = features.active().label.class_names
    if PROBABILITIES_KEY in output:  # multi-class (no regression signature: `resolve` refuses it)
        if signature == CLASSIFICATION:
            return {CLASSES: list(class_names), SCORES: list(output[PROBABILITIES_KEY])}
        return {PROBABILITIES_KEY: output[PROBABILITIES_KEY], CLASS_KEY: output[CLASS_KEY]}
    probability = output[PROBABILITY_KEY]
    if signature == CLASSIFICATION:
        return {CLASSES: list(class_names), SCORES: [float(_ONE - np.float32(probability)), probability]}
    if signature == REGRESSION:
        return {OUTPUTS: probability}
    return {PROBABILITY_KEY: probability, CLASS_KEY: output[CLASS_KEY]}


def graph_outputs(signature: str, scores: Any, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The same outputs as tensors, for the export (`scores`: the model's, shape [N] for a binary
    label, [N, classes] for a multi-class one)."""
    import tensorflow as tf

    multiclass = len(scores.shape) == 2
    if signature == CLASSIFICATION:
        batch = tf.shape(scores)[0]
        classes = tf.tile(tf.constant([list(class_names)]), tf.stack([batch, 1]))
        return {CLASSES: classes, SCORES: scores if multiclass else tf.stack([1.0 - scores, scores], axis=1)}
    if multiclass:
        return {PROBABILITIES_KEY: scores, CLASS_KEY: tf.argmax(scores, axis=1, output_type=tf.int64)}
    if signature == REGRESSION:
        return {OUTPUTS: scores}
    return {PROBABILITY_KEY: scores, CLASS_KEY: tf.cast(scores > 0.5, tf.int64)}


def set_method_names(path: str | Path) -> None:
    """Give the classification and regression signatures of the SavedModel at `path` their TF
    Serving method names, and rewrite its fingerprint to match."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model import fingerprinting_utils

    graph_file = Path(path) / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(graph_file.read_bytes())
    for meta_graph in saved.meta_graphs:
        for name, method in METHODS.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    graph_file.write_bytes(saved.SerializeToString(deterministic=True))
    fingerprinting_utils.write_fingerprint(str(path))


def signature_defs(path: str | Path) -> dict[str, Any]:
    """The SignatureDef protos of the SavedModel at `path` (its serving meta graph), by name."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((Path(path) / "saved_model.pb").read_bytes())
    meta_graph = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), saved.meta_graphs[0])
    return dict(meta_graph.signature_def)
