"""Resolver strategies over spans that passed DataGate, and over what earlier runs left for this one."""
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


class SpanWindowStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The newest candidate of each span in [current - window_spans + 1, current].

    Unlike SpanRangeStrategy it counts back from this run's span (not from the newest candidate
    present), and keeps one artifact per span: a span validated twice (after a cache miss) is
    trained on once.
    """

    def __init__(self, window_spans: int):
        self._window = window_spans

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        current = max((_span(a) for a in input_dict[CURRENT]), default=None)
        newest: dict[int, types.Artifact] = {}
        for artifact in input_dict[CANDIDATES]:
            span = _span(artifact)
            if current is not None and current - self._window < span <= current:
                if span not in newest or artifact.id > newest[span].id:
                    newest[span] = artifact
        return {CANDIDATES: [newest[s] for s in sorted(newest)], CURRENT: input_dict[CURRENT]}


class EarlierOutputStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The newest candidate created before the current artifact (by MLMD id).

    Used for Transform's analyzer cache: the cache the last Transform wrote before this run's span
    was ingested. A re-run of the same span resolves the same cache (the cache its first run wrote
    is newer than its ExampleGen output), so the re-run stays cached.
    """

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        current = min((a.id for a in input_dict[CURRENT]), default=None)
        earlier = [a for a in input_dict[CANDIDATES] if current is not None and a.id < current]
        best = max(earlier, key=lambda a: a.id, default=None)
        return {CANDIDATES: [best] if best else [], CURRENT: input_dict[CURRENT]}


def span_window_resolver(window_spans: int, candidates: types.BaseChannel, current: types.BaseChannel) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"window_spans": window_spans},
        **{CANDIDATES: candidates, CURRENT: current},
    ).with_id("span_window")


def previous_span_resolver(node_id: str, candidates: types.BaseChannel, current: types.BaseChannel) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=PreviousSpanStrategy, **{CANDIDATES: candidates, CURRENT: current}
    ).with_id(node_id)


def earlier_output_resolver(node_id: str, candidates: types.BaseChannel, current: types.BaseChannel) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=EarlierOutputStrategy, **{CANDIDATES: candidates, CURRENT: current}
    ).with_id(node_id)
