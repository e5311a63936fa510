"""Ranking quality of probabilities against labels, in plain Python (no TensorFlow, no TFMA): for
the monitoring of served traffic and for permutation importance (models/attribution.py)."""
from __future__ import annotations

from typing import Sequence


def auc(scores: Sequence[float], truth: Sequence[int]) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); None with a single class."""
    positives = sum(truth)
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += sum(mean_rank for k in range(i, j + 1) if truth[order[k]] == 1)
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
