"""Resolver strategies over earlier runs' artifacts, on hand-made artifacts with MLMD ids."""
from __future__ import annotations

from tfx.types import standard_artifacts

from pipeline.components.span_resolvers import CANDIDATES, CURRENT, EarlierOutputStrategy


def _artifact(cls, artifact_id: int):
    artifact = cls()
    artifact.id = artifact_id
    return artifact


def _resolve(cache_ids: list[int], examples_id: int) -> list[int]:
    inputs = {
        CANDIDATES: [_artifact(standard_artifacts.TransformCache, i) for i in cache_ids],
        CURRENT: [_artifact(standard_artifacts.Examples, examples_id)],
    }
    return [a.id for a in EarlierOutputStrategy().resolve_artifacts(None, inputs)[CANDIDATES]]


def test_the_newest_cache_written_before_this_span_was_ingested():
    # Span 2's examples are artifact 20; caches 5 and 12 came from spans before it.
    assert _resolve([5, 12], examples_id=20) == [12]


def test_a_re_run_resolves_what_its_first_run_did():
    # The first run of span 2 wrote cache 31 after its examples (20): a re-run with the same
    # examples ignores it, so Transform's inputs are unchanged and it stays cached.
    assert _resolve([5, 12, 31], examples_id=20) == [12]


def test_nothing_earlier_resolves_nothing():
    assert _resolve([], examples_id=3) == []
    assert _resolve([9], examples_id=3) == []
