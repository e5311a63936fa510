"""PreviousValidatedStatistics: DataGate's drift baseline where no custom resolver compiles.

With history="stores" (Kubeflow Pipelines v2, Vertex AI) this component takes the place of the
PreviousSpanStrategy resolver (pipeline/components/span_resolvers.py), with the same node id and
the same answer: the validated statistics of the newest span of this run's namespace (`namespace`:
upstream or feedback) older than this run's span. It
reads them from the index of validated spans that SpanWindow keeps
(pipeline/components/span_window.py), where only spans DataGate passed are recorded, and outputs
a copy (a KFP v2 output is a new artifact), labelled with that span and version and carrying
DataGate's plausibility measures of it.

Its input is this run's ExampleGen output, so the baseline is chosen relative to the current span
and an unchanged re-run is served from the cache with the same baseline. Before any earlier span
was validated the output is empty, and DataGate scores no drift (as with an empty resolver).
"""
# No `from __future__ import annotations`: TFX reads the real type hints of the component.
from tfx import v1 as tfx
from tfx.utils import io_utils

from data.spans_io import UPSTREAM
from pipeline.components import span_window
from pipeline.components.data_gate import PLAUSIBILITY_PROPERTY


@tfx.dsl.components.component
def PreviousValidatedStatistics(
    current: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    statistics: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    index_uri: tfx.dsl.components.Parameter[str],
    namespace: tfx.dsl.components.Parameter[str] = UPSTREAM,
) -> None:
    span = current.get_int_custom_property("span")
    older = [s for s in span_window.indexed_spans(index_uri, namespace) if s < span]
    if not older:
        return
    entry = span_window.read_entry(index_uri, older[-1], namespace)
    io_utils.copy_dir(entry["statistics_uri"], statistics.uri)
    statistics.split_names = entry["statistics_split_names"]
    statistics.set_int_custom_property("span", entry["span"])
    statistics.set_int_custom_property("version", entry["version"])
    if entry.get("plausibility"):  # DataGate's measures of that span, as on its validated statistics
        statistics.set_string_custom_property(PLAUSIBILITY_PROPERTY, entry["plausibility"])
