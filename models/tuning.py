"""The hyperparameter search space of the model, and the TFX Tuner's entry point (`tuner_fn`).

Each trial builds the Trainer's network (`model.build_model`) with the trial's values and trains it
as `model.run_fn` does (same steps, seed, Transform graph in tf.data), but on four fifths of the
train split: the other fifth, picked by a hash of each serialized example, is the trial's
validation data. The eval split is left to the Evaluator, which judges the tuned model on data
the search never saw.

The search is KerasTuner's random-search oracle, seeded, with two additions (`BudgetedOracle`):
the first trial is the default hyperparameters (`model.HParams`), so the search reports how the
default scored and never picks something worse on its own validation data; and a time budget
starts no trial after `max_seconds` (the default's always runs). Same data, code, seed and trial
budget give the same trials and the same choice; a search ended by the time budget says so
(`ended_by`), as its choice then depends on the machine's speed.

Keras 3 throughout: the network is Keras 3 (the Transform layer, tf_keras, runs only in tf.data).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

import keras
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from models import features, label_metrics, model

# The search space: every value the oracle may pick, per HParams field; each default (the value
# model.HParams has) is among them. Network shapes are "64-32" (units of each dense layer).
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "learning_rate": (0.0001, 0.0003, 0.001, 0.003, 0.01),
    "hidden_units": ("32-16", "64-32", "128-64", "256-128", "128-64-32"),
    "embedding_dim": (4, 8, 16),
    "dropout": (0.0, 0.1, 0.2, 0.3, 0.4),
    "batch_size": (64, 128, 256),
}
OBJECTIVES = ("auc", "binary_accuracy")  # validation metric the search maximises
HOLDOUT_BUCKETS = 5  # one in five train examples validates the trials
TUNER_DIR = "keras_tuner"  # under the Tuner's working dir: KerasTuner's trial records
TENSORBOARD_DIR = "tensorboard"  # under the Tuner's working dir: one folder per trial, with its hparams


def _space_value(name: str, value: Any) -> Any:
    """An HParams value as the search space spells it."""
    return "-".join(str(u) for u in value) if name == "hidden_units" else value


def declare(hp: keras_tuner.HyperParameters) -> model.HParams:
    """Declare the search space on `hp` (defaults: model.HParams) and return the HParams of its values."""
    defaults = asdict(model.HParams())
    values = {
        name: hp.Choice(name, list(choices), default=_space_value(name, defaults[name]))
        for name, choices in SEARCH_SPACE.items()
    }
    return model.HParams.from_config(values)


class BudgetedOracle(keras_tuner.oracles.RandomSearchOracle):
    """KerasTuner's random search, seeded; the default values first (always run); no later trial
    starts after `max_seconds`, counted from the oracle's creation."""

    def __init__(self, max_seconds: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.deadline = time.monotonic() + max_seconds
        self.ended_by = "trials"

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if not self.trials:
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": dict(self.hyperparameters.values)}
        if time.monotonic() > self.deadline:
            self.ended_by = "time"
            return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


def _raw_records(file_patterns: list[str]) -> tf.data.Dataset:
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def _split(fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput, batch_size: int, seed: int, holdout: bool) -> tf.data.Dataset:
    """(model inputs, label) batches of the train split's trial-training part (`holdout` False,
    shuffled and repeated) or its validation part (`holdout` True, in file order, once)."""
    records = _raw_records(fn_args.train_files)
    bucket = lambda record: tf.strings.to_hash_bucket_fast(record, HOLDOUT_BUCKETS) == 0  # noqa: E731
    records = records.filter(bucket if holdout else lambda record: tf.logical_not(bucket(record)))
    if not holdout:
        records = records.shuffle(10_000, seed=seed).repeat()
    tft_layer = tf_transform_output.transform_features_layer()
    spec = tf_transform_output.raw_feature_spec()
    inputs, label = model.model_inputs(), features.active().label.name

    @tf.autograph.experimental.do_not_convert
    def transform(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        transformed = tft_layer(tf.io.parse_example(serialized, spec))
        return {k: transformed[k] for k in inputs}, transformed[label]

    return records.batch(batch_size).map(transform)


class SeededSearch(keras_tuner.Tuner):
    """Each trial starts from the same seed, with its own datasets (its batch size), so a trial's
    score depends on its values alone, not on the trials before it."""

    def __init__(self, fn_args: tfx.components.FnArgs, seed: int, **kwargs: Any):
        self._fn_args, self._seed = fn_args, seed
        self._transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
        sizes = model.categorical_sizes(self._transform_output)
        steps = max(1, fn_args.train_steps)
        super().__init__(hypermodel=lambda hp: model.build_model(sizes, declare(hp), steps_per_execution=steps), **kwargs)

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        model.make_deterministic(self._seed)
        batch_size = model.HParams.from_config(trial.hyperparameters.values).batch_size
        train = _split(self._fn_args, self._transform_output, batch_size, self._seed, holdout=False)
        validation = _split(self._fn_args, self._transform_output, batch_size, self._seed, holdout=True)
        return super().run_trial(trial, train, *args, validation_data=validation, **kwargs)


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """TFX Tuner entry point. custom_config: seed, objective (OBJECTIVES), max_trials, max_seconds."""
    config = fn_args.custom_config or {}
    features.activate_from(config)
    seed = int(config.get("seed", 0))
    objective = str(config.get("objective", "auc"))
    if objective not in OBJECTIVES:
        raise ValueError(f"tune objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    metric = label_metrics.active().gated(objective)  # binary_accuracy: the label's accuracy
    if metric is None:
        raise ValueError(f"tune objective {objective!r} is binary-only: a multi-class label tunes on binary_accuracy (its accuracy)")
    hp = keras_tuner.HyperParameters()
    declare(hp)
    oracle = BudgetedOracle(
        max_seconds=float(config.get("max_seconds", 180)),
        objective=keras_tuner.Objective(f"val_{metric}", direction="max"),
        max_trials=int(config.get("max_trials", 10)),
        seed=seed + 1,  # KerasTuner draws a random seed for 0
        hyperparameters=hp,
        tune_new_entries=False,
    )
    tuner = SeededSearch(
        fn_args, seed, oracle=oracle, directory=os.path.join(fn_args.working_dir, TUNER_DIR),
        project_name="search", overwrite=True,
    )
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "steps_per_epoch": max(1, fn_args.train_steps),
            "epochs": 1,
            "callbacks": [keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.working_dir, TENSORBOARD_DIR))],
            "shuffle": False,  # the dataset shuffles, with the seed
            "verbose": 0,
        },
    )
