"""LatestTunedHyperparameters: the Trainer's hyperparameters where no custom resolver compiles.

With history="stores" (Kubeflow Pipelines v2, Vertex AI) this component takes the place of the
latest_hyperparameters resolver (pipeline/pipeline.py), with the same node id and the same answer:
the newest Tuner's choice in this pipeline, or nothing before the first tuning. The Tuner of the
stores form records each search in the tuning index under the pipeline root
(pipeline/components/tuner.py `record`: one entry per search, named by when it ended); this
component outputs a copy of the newest entry's best_hyperparameters (a KFP v2 output is a new
artifact) with the Tuner's properties and the URI it was copied from (TUNED_FROM_PROPERTY), so
readers of ML Metadata find the search itself.

Its input is this run's ExampleGen output, so the choice is read once per span: a run on a new
span takes the newest search, an unchanged re-run is served from the cache with the same choice.
Before any search it writes no hyperparameters (an empty values set, as KerasTuner spells one),
which the Trainer reads as the defaults and readers as "default".
"""
# No `from __future__ import annotations`: TFX reads the real type hints of the component.
import json
import os

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.utils import io_utils

from pipeline.artifact_properties import TUNED_FROM_PROPERTY
from pipeline.components import tuner

BEST_FILE = "best_hyperparameters.txt"  # TFX's Tuner's file name, which the Trainer reads


def newest_entry(index_uri: str) -> dict | None:
    """The newest search recorded in the tuning index (None: no search yet)."""
    if not fileio.isdir(index_uri):
        return None
    names = sorted((n.rstrip("/") for n in fileio.listdir(index_uri) if n.rstrip("/").endswith(".json")), key=lambda n: int(n[:-5]))
    if not names:
        return None
    with fileio.open(os.path.join(index_uri, names[-1])) as handle:
        return json.loads(handle.read())


def copy_newest(index_uri: str, hyperparameters: types.Artifact) -> None:
    """Fill `hyperparameters` with the newest search of the index, or with none."""
    entry = newest_entry(index_uri)
    if entry is None:
        io_utils.write_string_file(os.path.join(hyperparameters.uri, BEST_FILE), json.dumps({"space": [], "values": {}}))
        return
    io_utils.copy_file(os.path.join(entry["uri"], BEST_FILE), os.path.join(hyperparameters.uri, BEST_FILE))
    tuner.set_properties(hyperparameters, {**entry["properties"], TUNED_FROM_PROPERTY: entry["uri"]})


@tfx.dsl.components.component
def LatestTunedHyperparameters(
    current: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    hyperparameters: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.HyperParameters],
    index_uri: tfx.dsl.components.Parameter[str],
) -> None:
    del current  # an input for the cache key only (see the module docstring)
    copy_newest(index_uri, hyperparameters)
