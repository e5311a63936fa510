"""DataGate: the step that stops an invalid span before it reaches Transform and Trainer.

ExampleValidator only records anomalies. DataGate reads them and either fails the run with a
report naming each anomaly, or publishes the span as *validated examples* (a copy of the
ExampleGen output with the same span, version and splits). The training window is drawn only from
validated examples, so a blocked span can never be trained on, not in this run nor in a later
run's window, and every model's lineage passes through the gate.
"""
# No `from __future__ import annotations`: TFX reads the real type hints of DataGate.
from tfx import v1 as tfx
from tfx.utils import io_utils

from pipeline import anomalies as anomalies_lib


SPAN_KEYS = ("span", "version")


class DataValidationError(RuntimeError):
    """A span violates the schema; nothing downstream may run on it."""


@tfx.dsl.components.component
def DataGate(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    validated_examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
) -> None:
    found = anomalies_lib.read(anomalies.uri, anomalies.split_names)
    if found:
        raise DataValidationError(
            f"span {examples.get_int_custom_property('span')} blocked before training: {len(found)} schema anomalies\n"
            + anomalies_lib.report(found)
        )
    io_utils.copy_dir(examples.uri, validated_examples.uri)
    validated_examples.split_names = examples.split_names
    for key in SPAN_KEYS:  # ExampleGen records span and version as custom properties
        if examples.has_custom_property(key):
            validated_examples.set_int_custom_property(key, examples.get_int_custom_property(key))
