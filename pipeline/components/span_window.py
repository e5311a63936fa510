"""SpanWindow: the training window where the orchestrator compiles no custom resolver.

KubeflowV2DagRunner (Kubeflow Pipelines v2, Vertex AI) compiles only LatestArtifactStrategy and
LatestBlessedModelStrategy resolvers, so with history="stores" this component replaces the
SpanRangeStrategy resolver. It receives the span this run's DataGate validated, records it in an
index of validated spans (one JSON file per span under `index_uri`, pointing at DataGate's
examples and statistics), and assembles the index's spans numbered N-K+1..N into one Examples
artifact: the spans SpanRangeStrategy picks, copied into one artifact because a KFP v2 input
carries exactly one. Only DataGate's outputs enter the index, so a blocked span is never trained
on and never becomes a drift baseline (pipeline/components/previous_statistics.py reads it).
"""
# No `from __future__ import annotations`: TFX reads the real type hints of SpanWindow.
import json
import os
from typing import Any, Optional

from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from pipeline.components.data_gate import SPAN_KEYS

# Set on the one Examples artifact of a window: its spans ("1,3") and the validated artifacts' URIs (JSON).
WINDOW_SPANS_PROPERTY = "window_spans"
WINDOW_SOURCES_PROPERTY = "window_sources"


def _entry_path(index_uri: str, span: int) -> str:
    return os.path.join(index_uri, f"span-{span}.json")


def read_entry(index_uri: str, span: int) -> Optional[dict[str, Any]]:
    """The indexed validated span: {span, version, uri, split_names} of its examples, and
    statistics_uri, statistics_split_names of its statistics; None if `span` is not indexed."""
    path = _entry_path(index_uri, span)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return json.load(handle)


def indexed_spans(index_uri: str) -> list[int]:
    """The span numbers in the index, ascending."""
    if not fileio.isdir(index_uri):
        return []
    names = (name.rstrip("/") for name in fileio.listdir(index_uri))
    return sorted(int(n[len("span-") : -len(".json")]) for n in names if n.startswith("span-") and n.endswith(".json"))


def record(
    index_uri: str,
    validated: tfx.types.standard_artifacts.Examples,
    statistics: tfx.types.standard_artifacts.ExampleStatistics,
) -> None:
    """Index a validated span and its statistics; an already indexed newer version is kept."""
    span, version = (
        validated.get_int_custom_property(key) if validated.has_custom_property(key) else 0 for key in SPAN_KEYS
    )
    existing = read_entry(index_uri, span)
    if existing and existing["version"] > version:
        return
    entry = {
        "span": span,
        "version": version,
        "uri": validated.uri,
        "split_names": validated.split_names,
        "statistics_uri": statistics.uri,
        "statistics_split_names": statistics.split_names,
    }
    fileio.makedirs(index_uri)
    temporary = _entry_path(index_uri, span) + ".tmp"
    with fileio.open(temporary, "w") as handle:
        json.dump(entry, handle)
    fileio.rename(temporary, _entry_path(index_uri, span), overwrite=True)


def assemble(entries: list[dict[str, Any]], output: tfx.types.standard_artifacts.Examples) -> None:
    """Copy the indexed spans' split files into `output` (one artifact, same splits)."""
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
                    fileio.copy(os.path.join(source, name), os.path.join(target, f"span-{entry['span']}-{name}"), True)
    newest = entries[-1]
    output.split_names = newest["split_names"]
    output.set_int_custom_property("span", newest["span"])
    output.set_int_custom_property("version", newest["version"])
    output.set_string_custom_property(WINDOW_SPANS_PROPERTY, ",".join(str(e["span"]) for e in entries))
    output.set_string_custom_property(WINDOW_SOURCES_PROPERTY, json.dumps([e["uri"] for e in entries]))


@tfx.dsl.components.component
def SpanWindow(
    validated_examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    validated_statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    index_uri: tfx.dsl.components.Parameter[str],
    window_spans: tfx.dsl.components.Parameter[int],
) -> None:
    record(index_uri, validated_examples, validated_statistics)
    newest = validated_examples.get_int_custom_property("span")
    found = [read_entry(index_uri, span) for span in range(newest - window_spans + 1, newest + 1)]
    assemble([entry for entry in found if entry is not None], examples)
