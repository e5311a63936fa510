"""Keras 3 model for the contract's label, its TFX Trainer entry point, and serving signatures.

A binary label gets a sigmoid output and binary cross-entropy, a multi-class one (kind "classes") a
softmax over its classes and sparse categorical cross-entropy. The exported SavedModel carries the
tf.Transform graph, so callers send raw features:
  serving_default     serialized tf.Example (SERVING features) -> probability (binary) or
                      probabilities (multi-class, one per class), predicted_class
  classification      the same, as TF Serving's classify signature -> classes, scores
  regression          (binary only) the same, as TF Serving's regress signature -> outputs (the probability)
  transform_features  serialized tf.Example (TRAINING features) -> transformed features + label,
                      used by the Evaluator to read the label computed in-graph.
(models/signatures.py: what each answers, and their TF Serving method names.)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tf_keras.src.saving.legacy.saved_model import utils as tf_keras_saving
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features, label_metrics, signatures, warmup
from models.contract import NUMERIC_TRANSFORMS
from models.features import CLASS_KEY, PROBABILITIES_KEY, PROBABILITY_KEY  # noqa: F401 (CLASS_KEY: callers read both here)


def model_inputs() -> tuple[str, ...]:
    """The transformed features the model reads (the active contract's model features)."""
    return tuple(features.transformed_name(k) for k in features.active().model_features)


@dataclass(frozen=True)
class HParams:
    """Model hyperparameters; the pipeline passes overrides through Trainer's custom_config."""

    learning_rate: float = 0.003
    batch_size: int = 128
    hidden_units: tuple[int, ...] = (64, 32)
    embedding_dim: int = 8
    dropout: float = 0.1
    epochs: int = 10  # train_steps are spread over this many epochs (one TensorBoard point each)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> "HParams":
        """HParams from a dict of some of its fields (others ignored); hidden_units as a list or
        as the search space spells it ("64-32", models/tuning.py)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (config or {}).items() if k in known}
        if "hidden_units" in values:
            units = values["hidden_units"]
            values["hidden_units"] = tuple(int(u) for u in (units.split("-") if isinstance(units, str) else units))
        return cls(**values)


def resolve_hparams(hyperparameters: dict[str, Any] | None, custom_config: dict[str, Any] | None) -> HParams:
    """What the Trainer trains with: the defaults, then the Tuner's choice (`hyperparameters`: the
    newest best_hyperparameters, KerasTuner's HyperParameters config, or None before the first
    tuning), then the pipeline's explicit overrides (custom_config: PipelineConfig.hparams)."""
    return HParams.from_config({**(hyperparameters or {}).get("values", {}), **(custom_config or {})})


def categorical_sizes(tf_transform_output: tft.TFTransformOutput) -> dict[str, int]:
    """Transformed categorical feature -> number of distinct ids it can take."""
    sizes = {}
    for feature in features.active().features:
        if feature.transform == "quantile_buckets":
            sizes[feature.name] = feature.buckets + 1
        elif feature.transform == "vocabulary":
            sizes[feature.name] = tf_transform_output.vocabulary_size_by_name(feature.name) + feature.oov
        elif feature.transform in ("category", "hash"):
            sizes[feature.name] = feature.buckets
    return {features.transformed_name(k): v for k, v in sizes.items()}


def build_model(categorical_sizes: dict[str, int], hparams: HParams, steps_per_execution: int = 1) -> keras.Model:
    """A deep network: z-scored numerics plus an embedding per categorical feature.

    `steps_per_execution` training steps run in one graph call (same steps, less per-step overhead).
    """
    inputs: dict[str, keras.Input] = {}
    parts = []
    numeric = []
    for feature in features.active().with_transform(*NUMERIC_TRANSFORMS):
        name = features.transformed_name(feature.name)
        inputs[name] = keras.Input(shape=(), name=name, dtype="float32")
        numeric.append(keras.layers.Reshape((1,))(inputs[name]))
    parts.append(keras.layers.Concatenate()(numeric))
    for name, size in sorted(categorical_sizes.items()):
        inputs[name] = keras.Input(shape=(), name=name, dtype="int64")
        embedded = keras.layers.Embedding(size, min(hparams.embedding_dim, size), name=f"{name}_embedding")(inputs[name])
        parts.append(embedded)
    x = keras.layers.Concatenate()(parts)
    for units in hparams.hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
        if hparams.dropout:
            x = keras.layers.Dropout(hparams.dropout)(x)
    label = features.active().label
    if label.multiclass:
        output = keras.layers.Dense(len(label.classes), activation="softmax", name=PROBABILITIES_KEY)(x)
        loss, metrics = "sparse_categorical_crossentropy", [keras.metrics.SparseCategoricalAccuracy(name=label_metrics.MULTICLASS.accuracy)]
    else:
        output = keras.layers.Dense(1, activation="sigmoid", name=PROBABILITY_KEY)(x)
        loss, metrics = "binary_crossentropy", [keras.metrics.BinaryAccuracy(name="binary_accuracy"), keras.metrics.AUC(name="auc")]
    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=keras.optimizers.Adam(hparams.learning_rate), loss=loss, metrics=metrics, steps_per_execution=steps_per_execution
    )
    return model


class ServingModule(tf.Module):
    """The exported object: model + transform graph + signatures.

    The functions that call the tf.Transform layer are traced without AutoGraph (here and in
    `_dataset`): they have no Python control flow over tensors, and AutoGraph would rewrite
    tf.Transform's own Python on its first trace in each process (see `export` for the figure).
    """

    def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        self._training_spec = raw_spec
        self._serving_spec = {k: v for k, v in raw_spec.items() if k in features.active().serving_features}
        self._inputs = model_inputs()
        self._label = features.active().label

    def _scores(self, serialized: tf.Tensor) -> tf.Tensor:
        """The model's answer: [N] probabilities of a binary label, [N, classes] of a multi-class one."""
        parsed = tf.io.parse_example(serialized, self._serving_spec)
        transformed = self.tft_layer(parsed)
        model_inputs = {k: transformed[k] for k in self._inputs}
        output = self.model(model_inputs, training=False)
        return output if self._label.multiclass else tf.reshape(output, [-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def serve_tf_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return signatures.graph_outputs(signatures.DEFAULT, self._scores(serialized), self._label.class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
    def classify_tf_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return signatures.graph_outputs(signatures.CLASSIFICATION, self._scores(serialized), self._label.class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
    def regress_tf_examples(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return signatures.graph_outputs(signatures.REGRESSION, self._scores(serialized), self._label.class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def transform_features(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized, self._training_spec)
        return self.tft_layer(parsed)

    def signatures(self) -> dict[str, Any]:
        """The exported signatures; a multi-class model has no regression one (:regress is refused)."""
        functions = {
            signatures.DEFAULT: self.serve_tf_examples,
            signatures.CLASSIFICATION: self.classify_tf_examples,
            signatures.REGRESSION: self.regress_tf_examples,
            signatures.TRANSFORM: self.transform_features,
        }
        return {name: f.get_concrete_function() for name, f in functions.items()
                if not (self._label.multiclass and name == signatures.REGRESSION)}


def export(model: keras.Model, tf_transform_output: tft.TFTransformOutput, path: str,
           warmup_examples: list[bytes] = ()) -> None:
    """Write the serving SavedModel to `path`.

    The tf.Transform layer is a tf_keras model, and tf_keras saves every layer's call functions
    as extra traces unless told not to (`save_traces=False`, which `Model.save` takes and
    `tf.saved_model.save` does not, hence tf_keras's option scope). Nothing loads the layer back
    as a Keras object: the signatures and the transform graph's assets and tables are saved as
    before. With the traces off and AutoGraph off (above) the export takes ~1 s instead of ~2 s;
    either alone saves nothing, the AutoGraph rewrite moving into the traces. `warmup_examples`
    (real eval rows) become TF Serving's warmup requests (models/warmup.py).
    """
    module = ServingModule(model, tf_transform_output)
    with tf_keras_saving.keras_option_scope(save_traces=False):
        tf.saved_model.save(module, path, signatures=module.signatures())
    signatures.set_method_names(path)
    if warmup_examples:
        warmup.write(path, warmup_examples)


def required_serving_features(tf_transform_output: tft.TFTransformOutput) -> list[str]:
    """The serving features serving_default cannot do without (FixedLenFeatures without a default)."""
    return [name for name, spec in tf_transform_output.raw_feature_spec().items()
            if name in features.active().serving_features and isinstance(spec, tf.io.FixedLenFeature) and spec.default_value is None]


def _dataset(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: int,
) -> tf.data.Dataset:
    """(model inputs, label) batches, shuffled and repeated: raw examples through the Transform
    graph, in tf.data. Transform does not materialise transformed examples (it only analyses), so
    training applies the same graph the served model carries. The same order for the same seed and
    files: the factory lists one split folder's files sorted, then shuffles files and records with
    `seed` (unseeded, the shuffle differs on every run); the map keeps the order.
    """
    tft_layer = tf_transform_output.transform_features_layer()
    inputs, label = model_inputs(), features.active().label.name

    @tf.autograph.experimental.do_not_convert
    def transform(raw: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        transformed = tft_layer(raw)
        return {k: transformed[k] for k in inputs}, transformed[label]

    raw = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle_seed=seed, sloppy_ordering=False),
        tf_transform_output.raw_metadata.schema,
    )
    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).repeat()


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train on the window (through the Transform graph), log to TensorBoard, export."""
    features.activate_from(fn_args.custom_config)
    hparams = resolve_hparams(fn_args.hyperparameters, fn_args.custom_config)
    seed = int((fn_args.custom_config or {}).get("seed", 0))
    make_deterministic(seed)  # before anything random is created: the datasets' shuffles included
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, hparams.batch_size, seed)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hparams.batch_size, seed)
    epochs = max(1, min(hparams.epochs, fn_args.train_steps))
    steps_per_epoch = max(1, fn_args.train_steps // epochs)
    model = build_model(categorical_sizes(tf_transform_output), hparams, steps_per_execution=steps_per_epoch)
    model.fit(
        train,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        validation_data=evaluation,
        validation_steps=max(1, fn_args.eval_steps),
        validation_freq=epochs,  # the eval split once, after the last epoch: validation feeds no decision
        callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch")],
        shuffle=False,  # the dataset factory already shuffles
        verbose=0,
    )
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "hparams.json"), "w") as handle:
        json.dump(asdict(hparams), handle)
    real = warmup.eval_examples(fn_args.eval_files, required_serving_features(tf_transform_output))
    export(model, tf_transform_output, fn_args.serving_model_dir, real)
