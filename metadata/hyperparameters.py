"""Which hyperparameters a model trained with, and where they came from, as ML Metadata recorded it.

The Trainer's Model carries every hyperparameter it trained with (pipeline/components/trainer.py;
a model trained before that record: the `hparams.json` its run wrote beside the TensorBoard
logs). Where they came from: the Trainer's `hyperparameters` input, the best_hyperparameters of a
Tuner (whose run, objective, scores and trials the Tuner recorded on it:
pipeline/components/tuner.py) or, in the stores form, a copy of one naming it
(pipeline/components/tuned_hyperparameters.py); or none, or a copy of none (the defaults); and the
pipeline's own overrides, in the Trainer's custom_config. Read without TensorFlow.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from data import files
from metadata import runs
from pipeline.artifact_properties import (
    BEST_SCORE_PROPERTY,
    DEFAULT_SCORE_PROPERTY,
    ENDED_BY_PROPERTY,
    HYPERPARAMETERS_PROPERTY,
    MAX_TRIALS_PROPERTY,
    OBJECTIVE_PROPERTY,
    TRIALS_PROPERTY,
    TUNED_FROM_PROPERTY,
    TUNED_VALUES_PROPERTY,
    TUNER_ID,
)

HPARAMS_FILE = "hparams.json"  # models.model.run_fn writes it into the Trainer's model_run


@dataclass(frozen=True)
class Tuning:
    """A Tuner's search, as it recorded it on its best_hyperparameters."""

    run_id: str | None  # the pipeline run the Tuner ran in (None: not recorded in this metadata)
    values: dict[str, Any]  # its choice, as the search space spells it
    objective: str  # e.g. val_auc, on the search's own validation data (a fifth of the train split)
    best_score: float
    default_score: float | None  # the first trial's: the default hyperparameters
    trials: int
    max_trials: int
    ended_by: str  # "trials" (reproducible) or "time" (the time budget stopped it)

    def describe(self) -> str:
        """One line: the run, the objective's figures and the budget."""
        default = f" vs the default's {self.default_score:.4f}" if self.default_score is not None else ""
        ended = ", stopped by the time budget" if self.ended_by == "time" else ""
        figures = f"{self.objective} {self.best_score:.4f}{default}; {self.trials} of {self.max_trials} trials{ended}"
        return f"tuned in run {self.run_id or '(not recorded here)'} ({figures})"


@dataclass(frozen=True)
class Hyperparameters:
    """What a model trained with."""

    values: dict[str, Any]  # every hyperparameter ({} if nothing recorded them)
    tuning: Tuning | None  # the search its tuned values came from (None: defaults)
    overrides: dict[str, Any] = field(default_factory=dict)  # set by the pipeline (PipelineConfig.hparams)

    @property
    def source(self) -> str:
        """default, or tuned in run R; and which values the pipeline set."""
        text = f"tuned in run {self.tuning.run_id}" if self.tuning else "default"
        return text + (f", set by the pipeline: {', '.join(sorted(self.overrides))}" if self.overrides else "")

    def origin(self, name: str) -> str:
        """Where hyperparameter `name` came from: pipeline, tuned or default."""
        if name in self.overrides:
            return "pipeline"
        return "tuned" if self.tuning and name in self.tuning.values else "default"


def tuning_of(store: metadata_store.MetadataStore, best: metadata_store_pb2.Artifact) -> Tuning | None:
    """The search behind a best_hyperparameters artifact (None: it holds no search's choice)."""
    if runs.custom_property(best, TUNED_VALUES_PROPERTY) is None:
        return None
    source = runs.custom_property(best, TUNED_FROM_PROPERTY)  # a stores-form copy: its Tuner's artifact
    if source:
        found = [a for a in store.get_artifacts_by_uri(source) if a.id != best.id]
        tuner = runs.producer(store, found[0].id) if found else None
    else:
        tuner = runs.producer(store, best.id)
    prop = lambda name: runs.custom_property(best, name)  # noqa: E731
    default = prop(DEFAULT_SCORE_PROPERTY)
    return Tuning(
        run_id=runs.run_of(store, tuner.execution.id) if tuner else None,
        values=json.loads(prop(TUNED_VALUES_PROPERTY) or "{}"),
        objective=str(prop(OBJECTIVE_PROPERTY) or "?"),
        best_score=float(prop(BEST_SCORE_PROPERTY) or "nan"),
        default_score=float(default) if default is not None else None,
        trials=int(prop(TRIALS_PROPERTY) or 0),
        max_trials=int(prop(MAX_TRIALS_PROPERTY) or 0),
        ended_by=str(prop(ENDED_BY_PROPERTY) or "trials"),
    )


def _recorded_values(trainer: runs.NodeExecution) -> dict[str, Any]:
    models = trainer.outputs.get("model", [])
    recorded = runs.custom_property(models[0], HYPERPARAMETERS_PROPERTY) if models else None
    if recorded:
        return json.loads(recorded)
    model_run = trainer.outputs.get("model_run", [])
    written = str(Path(model_run[0].uri, HPARAMS_FILE)) if model_run else None
    return json.loads(files.read_bytes(written)) if written and files.exists(written) else {}


def of_trainer(store: metadata_store.MetadataStore, trainer: runs.NodeExecution) -> Hyperparameters:
    """The hyperparameters of the model a Trainer execution trained."""
    values = _recorded_values(trainer)
    tuned = trainer.inputs.get("hyperparameters", [])
    config = runs.exec_property(trainer, "custom_config") or {}
    return Hyperparameters(
        values=values,
        tuning=tuning_of(store, tuned[0]) if tuned else None,
        overrides={k: v for k, v in config.items() if k in values},
    )


def trainings_since_tuning(store: metadata_store.MetadataStore, pipeline_name: str) -> tuple[int, str | None]:
    """How many models were trained (Trainer executions that ran, not cached) since the newest
    tuning run, and that run's id (None: never tuned, and the count is every model trained)."""
    tuners = runs.node_executions(store, pipeline_name, TUNER_ID)
    tuned_run = runs.run_of(store, tuners[-1].execution.id) if tuners else None
    after = tuners[-1].execution.id if tuners else 0
    trained = [
        t for t in runs.node_executions(store, pipeline_name, "Trainer")
        if t.execution.id > after and t.execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    return sum(1 for t in trained if runs.run_of(store, t.execution.id) != tuned_run), tuned_run


def format_value(value: Any) -> str:
    """A hyperparameter for people: layer units as 64-32, numbers as they are."""
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_values(values: dict[str, Any]) -> str:
    """name=value, ..., in name order."""
    return ", ".join(f"{name}={format_value(values[name])}" for name in sorted(values)) or "not recorded"


def describe(found: Hyperparameters) -> list[str]:
    """Two lines: every value, then where they came from."""
    source = found.tuning.describe() if found.tuning else "default (no tuning in this pipeline before this model)"
    if found.overrides:
        source += f"; set by the pipeline: {', '.join(sorted(found.overrides))}"
    return [format_values(found.values), f"from {source}"]
