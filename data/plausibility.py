"""The contract's cross-column plausibility rules (models/contract.py, `Plausibility`) measured on a
span's rows, while data/span_audit.py reads them: no second read of the files.

  ratio  the median of of / per x scale over the rows with both values, per > 0 (and the `where`
         column equal to its value); text that is not a number counts as no value
  same   the share of rows, among those with both values, whose two cells hold the same text

pipeline/validation.py decides whether a measure breaks its rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.contract import Plausibility

RATIO, SAME = "ratio", "same"


@dataclass
class Tally:
    """One rule's running measure over the batches of a span."""

    rule: Plausibility
    rows: int = 0  # rows the rule measured
    matches: int = 0  # kind "same": rows whose two cells are equal
    _ratios: list[np.ndarray] = field(default_factory=list, repr=False)

    def add(self, cells: dict[str, np.ndarray]) -> None:
        """Count one batch: `cells` maps each column of the batch to its texts (an object array)."""
        first, second = self.rule.columns
        if first not in cells or second not in cells:
            return
        if self.rule.kind == SAME:
            a, b = cells[first], cells[second]
            both = (a != "") & (b != "")
            self.rows += int(both.sum())
            self.matches += int((both & (a == b)).sum())
            return
        of, per = _numbers(cells[first]), _numbers(cells[second])
        keep = ~np.isnan(of) & (per > 0)
        if self.rule.where is not None:
            column, value = self.rule.where
            if column not in cells:
                return
            keep &= cells[column] == value
        ratios = of[keep] / per[keep] * self.rule.scale
        self.rows += len(ratios)
        self._ratios.append(ratios)

    @property
    def value(self) -> float | None:
        """The median ratio, or the share of equal rows; None when no row was measured."""
        if not self.rows:
            return None
        if self.rule.kind == SAME:
            return self.matches / self.rows
        return float(np.median(np.concatenate(self._ratios)))


def _numbers(texts: np.ndarray) -> np.ndarray:
    """float64 of each text, NaN where it is empty or not a number."""
    import pandas as pd

    return pd.to_numeric(texts, errors="coerce").astype(np.float64)


def tallies(rules: tuple[Plausibility, ...]) -> list[Tally]:
    return [Tally(rule) for rule in rules]
