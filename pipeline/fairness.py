"""Error rates per group, and the fairness gate of the blessing (docs/pipeline.md#fairness).

For every slice of the slice features, TFMA computes at the decision threshold (0.5) the false
positive rate, the false negative rate and the selection rate (`evaluation.FAIRNESS_METRICS`), for
the candidate and the baseline. A slice's gap is its rate minus the overall rate of the same model.
The gate refuses a candidate when, on a slice it gates, the candidate's gap is wider (in absolute
value) than the baseline's by more than the bound of that rate (`fairness_thresholds` in
pipeline/configs.py, above the seed-to-seed spread of the widening): a new version may not leave a
group further from everyone else than the version serving now did. A rate is gated on a slice with
at least `fairness_min_examples` eval examples of the class it is conditioned on (negatives for the
false positive rate, positives for the false negative rate, all examples for the selection rate);
below that a handful of examples moves it more than any bound. Without a baseline nothing widens:
the gaps are shown, not gated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline import evaluation
from pipeline.evaluation import OVERALL, Gate, TfmaResult, Verdict, class_counts, slice_order, undefined_reason

LABELS = {"fpr": "false positive rate", "fnr": "false negative rate", "predicted_positive_rate": "selection rate"}
CONDITIONED_ON = {"fpr": "negative", "fnr": "positive", "predicted_positive_rate": "eval"}


@dataclass(frozen=True)
class FairnessRow:
    """One rate on one slice: the candidate's against its overall rate, and the baseline's gap."""

    slice: str
    metric: str
    examples: int  # of the class the rate is conditioned on
    rate: float | None  # None: undefined on the slice
    overall: float | None
    baseline_rate: float | None = None
    baseline_overall: float | None = None
    lower: float | None = None  # the candidate's 95 % interval of `rate` (the model card's)
    upper: float | None = None
    bound: float | None = None  # the largest widening allowed (None: not gated)
    not_gated: str | None = None  # why not, when the rate has a bound
    undefined: str | None = None

    @property
    def gap(self) -> float | None:
        return None if self.rate is None or self.overall is None else self.rate - self.overall

    @property
    def baseline_gap(self) -> float | None:
        if self.baseline_rate is None or self.baseline_overall is None or self.undefined:
            return None
        return self.baseline_rate - self.baseline_overall

    @property
    def widening(self) -> float | None:
        """How much further from the overall rate the slice is than under the baseline."""
        gap, before = self.gap, self.baseline_gap
        return None if gap is None or before is None else abs(gap) - abs(before)

    @property
    def flagged(self) -> bool:
        """Refused by the gate."""
        return self.bound is not None and self.not_gated is None and self.widening is not None and self.widening > self.bound

    def to_json(self) -> dict[str, Any]:
        """The row as the model card records it (NaN-free: an undefined rate is None)."""
        derived = {"label": LABELS[self.metric], "gap": self.gap, "baseline_gap": self.baseline_gap, "widening": self.widening}
        return {**asdict(self), **derived, "flagged": self.flagged}

    def sentence(self) -> str:
        """The refusal (or the finding), naming the slice and both rates."""
        name = LABELS[self.metric]
        text = (
            f"{self.slice} ({self.examples:,} {CONDITIONED_ON[self.metric]} examples): {name} {self.rate:.4f} against "
            f"{self.overall:.4f} overall, a gap of {self.gap:+.4f}"
        )
        if self.widening is None:
            return text
        return text + (
            f" that widened by {self.widening:.4f} from the baseline's {self.baseline_gap:+.4f}"
            + (f" (at most {self.bound:g} allowed)" if self.bound is not None else "")
        )


def _examples(metric: str, counts: dict[str, float]) -> int:
    positive, negative = class_counts(counts)
    return {"fpr": negative, "fnr": positive}.get(metric, positive + negative)


def table(
    candidate: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]],
    bounds: dict[str, float],
    min_examples: int,
    intervals: dict[str, dict[str, Any]] | None = None,
) -> list[FairnessRow]:
    """Every fairness rate of every feature slice (natural order), with what the gate makes of it.
    `candidate` holds the slices' metrics with their counts (the Evaluator's), `baseline` the
    baseline's ({} without one), `bounds` metric -> largest widening allowed, `intervals` slice ->
    metric -> an estimate with `lower` and `upper` (the model card's)."""
    rows = []
    overall, base_overall = candidate.get(OVERALL, {}), baseline.get(OVERALL, {})
    for name in sorted((n for n in candidate if n != OVERALL), key=slice_order):
        counts, base = candidate[name], baseline.get(name, {})
        for metric in LABELS:
            if metric not in counts:
                continue
            undefined = undefined_reason(metric, counts[metric], counts)
            examples = _examples(metric, counts)
            bound = bounds.get(metric)
            not_gated = None
            if bound is not None and not base:
                not_gated = "no baseline"
            elif bound is not None and undefined:
                not_gated = f"undefined ({undefined})"
            elif bound is not None and examples < min_examples:
                not_gated = f"{examples} {CONDITIONED_ON[metric]} examples < {min_examples}"
            estimate = (intervals or {}).get(name, {}).get(metric)
            rows.append(
                FairnessRow(
                    slice=name,
                    metric=metric,
                    examples=examples,
                    rate=None if undefined else counts[metric],
                    overall=overall.get(metric),
                    baseline_rate=base.get(metric),
                    baseline_overall=base_overall.get(metric),
                    lower=getattr(estimate, "lower", None),
                    upper=getattr(estimate, "upper", None),
                    bound=bound,
                    not_gated=not_gated,
                    undefined=undefined,
                )
            )
    return rows


def refusals(rows: list[FairnessRow]) -> list[str]:
    """One sentence per slice and rate the gate refuses, in the table's order."""
    return [row.sentence() for row in rows if row.flagged]


def judge(result: TfmaResult, gate: Gate) -> Verdict:
    """The blessing rule (`evaluation.judge`) with the fairness gate's refusals added."""
    verdict = evaluation.judge(result, gate)
    refused = refusals(table(result.metrics, result.baseline_by_slice, dict(gate.fairness), gate.fairness_min_examples))
    return Verdict(blessed=verdict.blessed and not refused, refusals=verdict.refusals + refused, not_gated=verdict.not_gated)
