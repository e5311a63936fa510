"""The metrics of each label kind, in one place: what training reports (Keras), what the Evaluator
computes, compares and gates (TFMA), and which are binary-only.

A binary label has accuracy, AUC, precision, recall and the fairness rates at the 0.5 threshold; a
multi-class one has accuracy only (the predicted class is the most probable one): AUC, precision,
recall and the false positive / negative and selection rates are defined for one positive class
and are neither computed, gated nor shown for it. A configured threshold on `binary_accuracy` gates
the label's accuracy, whichever it is.
"""
from __future__ import annotations

from dataclasses import dataclass

from models import features
from models.contract import Label

# The name TFMA gives the results of each metric class Conveyor configures (a test checks them
# against TFMA's own), so that names are known without importing TFMA. Keras uses the same names.
METRIC_NAMES = {
    "BinaryAccuracy": "binary_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "AUC": "auc",
    "Precision": "precision",
    "Recall": "recall",
    "ExampleCount": "example_count",
    "TruePositives": "true_positives",
    "FalseNegatives": "false_negatives",
    "FPR": "fpr",
    "FNR": "fnr",
    "PredictedPositiveRate": "predicted_positive_rate",
}
ACCURACY_THRESHOLD = "binary_accuracy"  # the configured threshold that gates a label's accuracy


def metric_name(class_name: str) -> str:
    """The name TFMA gives the results of a metric class (BinaryAccuracy -> binary_accuracy)."""
    return METRIC_NAMES[class_name]


@dataclass(frozen=True)
class MetricSet:
    """The metric classes of one label kind."""

    accuracy: str  # the accuracy's metric name: the Evaluator's, the gate's, live monitoring's
    compared: tuple[str, ...]  # computed for the candidate and the baseline, shown side by side, gateable
    counts: tuple[str, ...]  # computed for the candidate alone (unless a threshold names one)
    fairness: tuple[str, ...]  # error rates per group at the 0.5 threshold
    shown: tuple[str, ...]  # the names the run summary and the model card show per slice (and the fairness rates)
    table: tuple[str, ...]  # the few a one-line-per-model table shows (conveyor models, runs, lineage, runs compare)

    def names(self, classes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(metric_name(c) for c in classes)

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names(self.counts + self.compared + self.fairness)

    def gated(self, threshold_metric: str) -> str | None:
        """The metric a configured threshold gates for this label (None: it has no such metric)."""
        metric = self.accuracy if threshold_metric == ACCURACY_THRESHOLD else threshold_metric
        return metric if metric in self.all_names else None


BINARY = MetricSet(
    "binary_accuracy",
    compared=("BinaryAccuracy", "AUC", "Precision", "Recall"),
    # Its eval examples per slice and, as true positives + false negatives at 0.5, its positive
    # ones: both read the confusion matrices BinaryAccuracy, Precision and Recall build anyway.
    counts=("ExampleCount", "TruePositives", "FalseNegatives"),
    fairness=("FPR", "FNR", "PredictedPositiveRate"),
    shown=("example_count", "binary_accuracy", "auc", "precision", "recall"),
    table=("binary_accuracy", "auc"),
)
MULTICLASS = MetricSet(
    "sparse_categorical_accuracy", compared=("SparseCategoricalAccuracy",), counts=("ExampleCount",), fairness=(),
    shown=("example_count", "sparse_categorical_accuracy"),
    table=("sparse_categorical_accuracy",),
)
BINARY_ONLY = tuple(name for name in BINARY.all_names if name not in MULTICLASS.all_names and name != BINARY.accuracy)


def of(label: Label) -> MetricSet:
    return MULTICLASS if label.multiclass else BINARY


def active() -> MetricSet:
    """The metrics of the active contract's label (models/features.py)."""
    return of(features.active().label)


def binary_only_note(label: Label) -> str | None:
    """The sentence a multi-class model's verdict and card carry on what is not computed (None: binary)."""
    if not label.multiclass:
        return None
    return (
        f"AUC, precision, recall and the fairness rates are binary-only: not computed or gated for the "
        f"{len(label.classes)}-class label {label.name} (accuracy is)"
    )
