"""What the model card reads of a training window and a model: each span's examples, the label of
each example, and the model's answers through its served signature.

A window is the Trainer's and Evaluator's `examples`: one artifact per validated span (history
"mlmd"), or one artifact holding every span's files named `span-N-...` / `feedback-N-...`
(history "stores", pipeline/components/span_window.py). Labels come from the model's
`transform_features` signature (`preprocessing_fn` computes `big_tipper` in the graph), as the
Evaluator reads them, so the card and the Evaluator count the same positives.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

from data import spans_io
from models import features
from models.instances import FeatureDict, from_example
from pipeline.artifact_properties import WINDOW_SPANS_PROPERTY

BATCH = 4096  # examples per model call
_PREFIXED = re.compile(rf"^({'|'.join(spans_io.DIR_PREFIXES.values())})(\d+)-")
_NAMESPACES = {prefix: namespace for namespace, prefix in spans_io.DIR_PREFIXES.items()}


@dataclass(frozen=True)
class Split:
    """One split of the window, span by span, in window order (upstream spans, then feedback)."""

    spans: list[str]  # spans_io.label of each span: "1", "feedback-2"
    examples: list[list[bytes]]  # serialized tf.Examples of each span

    @property
    def all(self) -> list[bytes]:
        return [e for span in self.examples for e in span]


def _span_files(artifact: Any, split: str) -> dict[tuple[str, int], list[str]]:
    """(namespace, span) -> the split's files in one window artifact."""
    from tfx.dsl.io import fileio

    folder = os.path.join(artifact.uri, f"Split-{split}")
    names = sorted(n for n in fileio.listdir(folder) if not fileio.isdir(os.path.join(folder, n)))
    if artifact.has_custom_property(WINDOW_SPANS_PROPERTY):  # one assembled artifact ("stores")
        found: dict[tuple[str, int], list[str]] = {}
        for name in names:
            match = _PREFIXED.match(name)
            if match:
                found.setdefault((_NAMESPACES[match.group(1)], int(match.group(2))), []).append(os.path.join(folder, name))
        return found
    from pipeline.components.span_resolvers import namespace_of

    return {(namespace_of(artifact), artifact.get_int_custom_property("span")): [os.path.join(folder, n) for n in names]}


def spans_of(artifact: Any) -> list[str]:
    """The spans a window artifact holds, labelled as spans_io.label does."""
    return [spans_io.label(span, namespace) for namespace, span in sorted(_span_files(artifact, "train"))]


def read_split(window: Sequence[Any], split: str) -> Split:
    """Every serialized example of `split` in the window, by span."""
    import tensorflow as tf

    files: dict[tuple[str, int], list[str]] = {}
    for artifact in window:
        files.update(_span_files(artifact, split))
    order = sorted(files, key=lambda key: (key[0] != spans_io.UPSTREAM, key[1]))
    examples = [[r.numpy() for r in tf.data.TFRecordDataset(files[key], compression_type="GZIP")] for key in order]
    return Split([spans_io.label(span, namespace) for namespace, span in order], examples)


def rows(serialized: Sequence[bytes]) -> list[FeatureDict]:
    """The raw serving features of each example (the label's inputs left out)."""
    serving = set(features.active().serving_features)
    return [{k: v for k, v in from_example(e).items() if k in serving} for e in serialized]


def labels(saved_model: Any, serialized: Sequence[bytes]) -> list[int]:
    """Each example's label as the model's Transform graph computes it (`transform_features`)."""
    import tensorflow as tf

    transform = saved_model.signatures["transform_features"]
    found: list[int] = []
    for start in range(0, len(serialized), BATCH):
        out = transform(examples=tf.constant(list(serialized[start : start + BATCH])))
        found.extend(int(v) for v in out[features.active().label.name].numpy().reshape(-1))
    return found
