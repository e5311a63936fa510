"""SpanWindow: the training window where the orchestrator compiles no custom resolver.

KubeflowV2DagRunner (Kubeflow Pipelines v2, Vertex AI) compiles only LatestArtifactStrategy and
LatestBlessedModelStrategy resolvers, so with history="stores" this component replaces the
SpanRangeStrategy resolver. It receives the span this run's DataGate validated, records it in an
index of validated spans (one JSON file per span under `index_uri`, pointing at DataGate's
examples and statistics), and assembles the index's spans of the window into one Examples artifact: the spans
SpanWindowStrategy (span_resolvers.py) picks, upstream N-K+1..N and feedback M-J+1..M, copied into
one artifact because a KFP v2 input carries exactly one. Entries are kept per namespace
(`span-N.json`, `feedback-N.json`), so feedback span N never replaces upstream span N. Only
DataGate's outputs enter the index, so a blocked span is never trained on and never becomes a
drift baseline (pipeline/components/previous_statistics.py reads it).
"""
# No `from __future__ import annotations`: TFX reads the real type hints of SpanWindow.
import json
import os
from typing import Any, Optional

from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from data.spans_io import DIR_PREFIXES, FEEDBACK, NAMESPACE_PROPERTY, UPSTREAM
from pipeline.artifact_properties import WINDOW_FEEDBACK_SPANS_PROPERTY, WINDOW_SOURCES_PROPERTY, WINDOW_SPANS_PROPERTY
from pipeline.components.data_gate import PLAUSIBILITY_PROPERTY, SPAN_KEYS
from pipeline.components.span_resolvers import namespace_of


def _entry_path(index_uri: str, span: int, namespace: str) -> str:
    return os.path.join(index_uri, f"{DIR_PREFIXES[namespace]}{span}.json")


def read_entry(index_uri: str, span: int, namespace: str = UPSTREAM) -> Optional[dict[str, Any]]:
    """The indexed validated span: {span, namespace, version, uri, split_names} of its examples and
    statistics_uri, statistics_split_names of its statistics; None if `span` is not indexed."""
    path = _entry_path(index_uri, span, namespace)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return {"namespace": UPSTREAM, **json.load(handle)}


def indexed_spans(index_uri: str, namespace: str = UPSTREAM) -> list[int]:
    """Span numbers of `namespace` in the index, ascending."""
    if not fileio.isdir(index_uri):
        return []
    prefix = DIR_PREFIXES[namespace]
    names = [os.path.basename(n.rstrip("/")) for n in fileio.listdir(index_uri)]
    return sorted(int(n[len(prefix):-5]) for n in names if n.startswith(prefix) and n.endswith(".json") and n[len(prefix):-5].isdigit())


def record(
    index_uri: str,
    validated: tfx.types.standard_artifacts.Examples,
    statistics: tfx.types.standard_artifacts.ExampleStatistics,
) -> None:
    """Index a validated span and its statistics; an already indexed newer version is kept."""
    span, version = (
        validated.get_int_custom_property(key) if validated.has_custom_property(key) else 0 for key in SPAN_KEYS
    )
    namespace = namespace_of(validated)
    existing = read_entry(index_uri, span, namespace)
    if existing and existing["version"] > version:
        return
    entry = {
        "span": span,
        "namespace": namespace,
        "version": version,
        "uri": validated.uri,
        "split_names": validated.split_names,
        "statistics_uri": statistics.uri,
        "statistics_split_names": statistics.split_names,
        "plausibility": statistics.get_string_custom_property(PLAUSIBILITY_PROPERTY)
        if statistics.has_custom_property(PLAUSIBILITY_PROPERTY) else "",
    }
    fileio.makedirs(index_uri)
    path = _entry_path(index_uri, span, namespace)
    with fileio.open(path + ".tmp", "w") as handle:
        json.dump(entry, handle)
    fileio.rename(path + ".tmp", path, overwrite=True)


def window_entries(index_uri: str, span: int, namespace: str, lengths: dict[str, int]) -> list[dict[str, Any]]:
    """The indexed entries of the window for this run's `span` of `namespace` (see span_resolvers)."""
    found = []
    for ns in (UPSTREAM, FEEDBACK):
        indexed = indexed_spans(index_uri, ns)
        anchor = span if ns == namespace else (indexed[-1] if indexed else None)
        if anchor is None:
            continue
        found += [read_entry(index_uri, s, ns) for s in indexed if anchor - lengths[ns] < s <= anchor]
    return found


def assemble(
    entries: list[dict[str, Any]], output: tfx.types.standard_artifacts.Examples, current: Optional[dict[str, Any]] = None
) -> None:
    """Copy the indexed spans' split files into `output` (one artifact, same splits), labelled with
    the span, version and namespace of `current` (this run's entry; default the last one)."""
    splits = artifact_utils.decode_split_names(entries[0]["split_names"])
    for entry in entries:
        if artifact_utils.decode_split_names(entry["split_names"]) != splits:
            raise ValueError(
                f"span {entry['span']} has splits {entry['split_names']}, span {entries[0]['span']} has "
                f"{entries[0]['split_names']}: a window needs the same splits in every span"
            )
        for split in splits:
            source = os.path.join(entry["uri"], f"Split-{split}")
            target = os.path.join(output.uri, f"Split-{split}")
            fileio.makedirs(target)
            for name in fileio.listdir(source):
                if not fileio.isdir(os.path.join(source, name)):
                    prefix = DIR_PREFIXES[entry.get("namespace", UPSTREAM)]
                    fileio.copy(os.path.join(source, name), os.path.join(target, f"{prefix}{entry['span']}-{name}"), True)
    current = current or entries[-1]
    output.split_names = current["split_names"]
    output.set_int_custom_property("span", current["span"])
    output.set_int_custom_property("version", current["version"])
    output.set_string_custom_property(NAMESPACE_PROPERTY, current.get("namespace", UPSTREAM))
    for key, namespace in ((WINDOW_SPANS_PROPERTY, UPSTREAM), (WINDOW_FEEDBACK_SPANS_PROPERTY, FEEDBACK)):
        output.set_string_custom_property(key, ",".join(str(e["span"]) for e in entries if e.get("namespace", UPSTREAM) == namespace))
    output.set_string_custom_property(WINDOW_SOURCES_PROPERTY, json.dumps([e["uri"] for e in entries]))


@tfx.dsl.components.component
def SpanWindow(
    validated_examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    validated_statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    index_uri: tfx.dsl.components.Parameter[str],
    window_spans: tfx.dsl.components.Parameter[int],
    feedback_window_spans: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    record(index_uri, validated_examples, validated_statistics)
    span, namespace = validated_examples.get_int_custom_property("span"), namespace_of(validated_examples)
    lengths = {UPSTREAM: window_spans, FEEDBACK: feedback_window_spans}
    assemble(window_entries(index_uri, span, namespace, lengths), examples, read_entry(index_uri, span, namespace))
