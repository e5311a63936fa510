"""Trainer module for tests: the real model, exported with a serving signature that requires `tips`.

The Evaluator feeds complete examples (with tips) and blesses it; a serving request never carries
tips, so InfraCheck must refuse it and Pusher must not push it.
"""
from models import model as _model


class _RequiresTips(_model.ServingModule):
    def __init__(self, keras_model, tf_transform_output):
        super().__init__(keras_model, tf_transform_output)
        self._serving_spec = dict(self._training_spec)  # the label source included


def run_fn(fn_args):
    real = _model.ServingModule
    _model.ServingModule = _RequiresTips
    try:
        _model.run_fn(fn_args)
    finally:
        _model.ServingModule = real
