"""The contract's cross-column plausibility rules (models/contract.py, `Plausibility`) measured on a
span's rows, while data/span_audit.py reads them: no second read of the files.

  ratio  the median of of / per x scale over the rows with both values, per > 0 (and the `where`
         column equal to its value); text that is not a number counts as no value
  same   the share of rows, among those with both values, whose two cells hold the same text

Each batch is judged with pyarrow's compute functions on the audit's text columns: the taxi's four
rules add ~0.2 s to the audit of 150,000 rows (0.43 s without them). pipeline/validation.py decides
whether a measure breaks its rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    @property
    def reads(self) -> tuple[str, ...]:
        """The columns the rule reads."""
        return self.rule.columns + ((self.rule.where[0],) if self.rule.where else ())

    def add(self, cells: dict[str, Any]) -> None:
        """Count one batch: `cells` maps each column of the batch to its texts (a pyarrow string array)."""
        import pyarrow.compute as pc

        if not all(c in cells for c in self.reads):
            return
        first, second = (cells[c] for c in self.rule.columns)
        if self.rule.kind == SAME:
            both = pc.and_(pc.not_equal(first, ""), pc.not_equal(second, ""))
            self.rows += pc.sum(both).as_py() or 0
            self.matches += pc.sum(pc.and_(both, pc.equal(first, second))).as_py() or 0
            return
        of, per = _numbers(first), _numbers(second)
        keep = ~np.isnan(of) & (per > 0)
        if self.rule.where is not None:
            column, value = self.rule.where
            keep &= pc.equal(cells[column], value).to_numpy(zero_copy_only=False)
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


def _numbers(texts: Any) -> np.ndarray:
    """float64 of each text (a pyarrow string array), NaN where it is empty or not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        numbers = pc.cast(pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts), pa.float64())
    except pa.ArrowInvalid:  # some text is not a number (DataGate names it): judge the cells one by one
        import pandas as pd

        return pd.to_numeric(texts.to_numpy(zero_copy_only=False), errors="coerce").astype(np.float64)
    return numbers.to_numpy(zero_copy_only=False).astype(np.float64)


def tallies(rules: tuple[Plausibility, ...]) -> list[Tally]:
    return [Tally(rule) for rule in rules]
