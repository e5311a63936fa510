"""Resolver strategies over spans that passed DataGate."""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx import v1 as tfx

CANDIDATES, CURRENT = "candidates", "current"


def _span(artifact: types.Artifact) -> int:
    return artifact.get_int_custom_property("span")


class PreviousSpanStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The newest candidate whose span is older than the current span.

    Inputs: `candidates` (e.g. every validated statistics artifact) and `current` (this run's
    ExampleGen output). Relative to the current span, so a re-run resolves the same baseline and
    stays cached.
    """

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        current = max((_span(a) for a in input_dict[CURRENT]), default=None)
        older = [a for a in input_dict[CANDIDATES] if current is not None and _span(a) < current]
        best = max(older, key=lambda a: (_span(a), a.id), default=None)
        return {CANDIDATES: [best] if best else [], CURRENT: input_dict[CURRENT]}


def previous_span_resolver(node_id: str, candidates: types.BaseChannel, current: types.BaseChannel) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=PreviousSpanStrategy, **{CANDIDATES: candidates, CURRENT: current}
    ).with_id(node_id)
