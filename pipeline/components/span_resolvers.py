"""Resolver strategies over spans that passed DataGate, namespace by namespace, and over what
earlier runs left for this one.

Validated artifacts carry their span's namespace (DataGate stamps `span_namespace`: "upstream"
or "feedback"; artifacts from before namespaces existed are upstream). This run's own span
(`current`, CsvExampleGen's output) is in the namespace the pipeline was built for.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx import v1 as tfx

from data.spans_io import FEEDBACK, NAMESPACE_PROPERTY, UPSTREAM

CANDIDATES, CURRENT = "candidates", "current"


def _span(artifact: types.Artifact) -> int:
    return artifact.get_int_custom_property("span")


def namespace_of(artifact: types.Artifact) -> str:
    if artifact.has_custom_property(NAMESPACE_PROPERTY):
        return artifact.get_string_custom_property(NAMESPACE_PROPERTY)
    return UPSTREAM


def _current_span(input_dict: dict[str, list[types.Artifact]]) -> int | None:
    return max((_span(a) for a in input_dict[CURRENT]), default=None)


class PreviousSpanStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The newest candidate of this run's namespace whose span is older than the current span.

    Inputs: `candidates` (e.g. every validated statistics artifact) and `current` (this run's
    ExampleGen output). Relative to the current span, so a re-run resolves the same baseline and
    stays cached. Each namespace is its own sequence: a feedback span is compared with the previous
    feedback span, an upstream span with the previous upstream span.
    """

    def __init__(self, namespace: str = UPSTREAM):
        self._namespace = namespace

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        current = _current_span(input_dict)
        older = [
            a for a in input_dict[CANDIDATES]
            if current is not None and namespace_of(a) == self._namespace and _span(a) < current
        ]
        best = max(older, key=lambda a: (_span(a), a.id), default=None)
        return {CANDIDATES: [best] if best else [], CURRENT: input_dict[CURRENT]}


class SpanWindowStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The training window: the newest candidate of each span in each namespace's window.

    Upstream spans (anchor - window_spans, anchor] and feedback spans (anchor - feedback_window_spans,
    anchor], where the anchor is this run's span in its own namespace and the newest validated span
    in the other. Unlike SpanRangeStrategy it counts back from this run's span (not from the newest
    candidate present), and keeps one artifact per span: a span validated twice (after a cache
    miss) is trained on once. Upstream spans come first, each namespace in span order.
    """

    def __init__(self, window_spans: int, feedback_window_spans: int = 0, namespace: str = UPSTREAM):
        self._lengths = {UPSTREAM: window_spans, FEEDBACK: feedback_window_spans}
        self._namespace = namespace

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        current = _current_span(input_dict)
        newest: dict[tuple[str, int], types.Artifact] = {}
        for artifact in input_dict[CANDIDATES]:
            key = (namespace_of(artifact), _span(artifact))
            if key not in newest or artifact.id > newest[key].id:
                newest[key] = artifact
        window = []
        for namespace in (UPSTREAM, FEEDBACK):
            spans = sorted(span for ns, span in newest if ns == namespace)
            anchor = current if namespace == self._namespace else (spans[-1] if spans else None)
            if anchor is None:
                continue
            low = anchor - self._lengths[namespace]
            window += [newest[(namespace, span)] for span in spans if low < span <= anchor]
        return {CANDIDATES: window, CURRENT: input_dict[CURRENT]}


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


class LatestIfAnyStrategy(tfx.dsl.experimental.LatestArtifactStrategy):
    """TFX's LatestArtifactStrategy (the newest artifact of each channel), resolving nothing when a
    channel has no artifact yet: TFX's returns None then, which records the resolver's execution as
    FAILED, though the run goes on without the input.

    Used for the Trainer's hyperparameters: the newest Tuner's choice, until the next tuning.
    """

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        return super().resolve_artifacts(store, input_dict) or {key: [] for key in input_dict}


def span_window_resolver(
    window_spans: int, feedback_window_spans: int, namespace: str, candidates: types.BaseChannel, current: types.BaseChannel
) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"window_spans": window_spans, "feedback_window_spans": feedback_window_spans, "namespace": namespace},
        **{CANDIDATES: candidates, CURRENT: current},
    ).with_id("span_window")


def previous_span_resolver(
    node_id: str, namespace: str, candidates: types.BaseChannel, current: types.BaseChannel
) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=PreviousSpanStrategy, config={"namespace": namespace}, **{CANDIDATES: candidates, CURRENT: current}
    ).with_id(node_id)


def earlier_output_resolver(node_id: str, candidates: types.BaseChannel, current: types.BaseChannel) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=EarlierOutputStrategy, **{CANDIDATES: candidates, CURRENT: current}
    ).with_id(node_id)
