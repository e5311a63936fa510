"""The blessing rule's thresholds, one per gated metric (pipeline/configs.py sets them; pipeline/evaluation.py
and pipeline/fairness.py apply them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """Blessing rule for one TFMA metric (pipeline/evaluation.py applies it)."""

    metric: str
    lower_bound: float  # floor on the overall slice
    # Largest drop against the baseline (the model serving now) still accepted on the overall
    # slice / on each slice of the slice features; None = no such check.
    max_drop: float | None = None
    slice_max_drop: float | None = None


@dataclass(frozen=True)
class FairnessThreshold:
    """Fairness gate for one error rate (pipeline/fairness.py applies it): the largest widening,
    against the baseline, of a slice's gap to the overall rate."""

    metric: str  # "fpr", "fnr" or "predicted_positive_rate"
    max_gap_widening: float
