"""Trainer module for tests: the real model, exported with a serving signature that requires `tips`.

The Evaluator feeds complete examples (with tips) and blesses it; a serving request never carries
tips, so InfraCheck must refuse it and Pusher must not push it. (The schema gives no feature a
fixed shape, so the signature demands tips itself: it parses tips as a required value first.)
"""
import tensorflow as tf

from models import features
from models import model as _model

_SERVING_MODULE = _model.ServingModule  # run_fn swaps the module attribute for the subclass below


class _RequiresTips(_SERVING_MODULE):
    def __init__(self, keras_model, tf_transform_output):
        super().__init__(keras_model, tf_transform_output)
        self._serving_spec = dict(self._training_spec)  # the label source included

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(self, serialized):
        required = {features.active().label.value: tf.io.FixedLenFeature([], tf.float32)}  # no default: fails without tips
        tips = tf.io.parse_example(serialized, required)[features.active().label.value]
        tf.debugging.assert_equal(tf.size(tips), tf.size(serialized))  # a stateful op: the parse is never pruned
        return _SERVING_MODULE.serve_tf_examples.python_function(self, serialized)


def run_fn(fn_args):
    _model.ServingModule = _RequiresTips
    try:
        _model.run_fn(fn_args)
    finally:
        _model.ServingModule = _SERVING_MODULE
