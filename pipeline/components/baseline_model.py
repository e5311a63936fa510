"""The Evaluator's baseline (history="mlmd"): the model serving now, as pipeline/versions.py decides.

The serving version (rollback-aware) names, in its push record, the Model artifact it was pushed
from; that model passed the Evaluator and InfraCheck, since only such models are pushed. A model
that was refused, or trained but never published, is never a baseline.

A candidate that was evaluated before (a re-run with unchanged inputs, or after a kill past the
Evaluator) keeps the baseline of that evaluation, read from its ModelBlessing: the Evaluator's
inputs are then unchanged, so it and everything after it are served from the cache, and the
decision repeats exactly. (TFX's LatestBlessedModelStrategy would instead return the cached
candidate itself on a re-run, making the Evaluator and Pusher run again.)
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import constants as evaluator_constants

from pipeline import versions
from pipeline.artifact_properties import MODEL_ID_PROPERTY

MODEL, BLESSING, CANDIDATE = "model", "model_blessing", "candidate"


class ServingModelStrategy(tfx.dsl.experimental.ResolverStrategy):
    """Inputs: every Model, every ModelBlessing, and this run's candidate Model."""

    def __init__(self, serving_root: str):
        self._serving_root = serving_root

    def resolve_artifacts(
        self, store: Any, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]] | None:
        candidates = {a.id for a in input_dict[CANDIDATE]}
        models = {m.id: m for m in input_dict[MODEL]}
        baseline_id = self._earlier_baseline(input_dict[BLESSING], candidates)
        if baseline_id is None:
            baseline_id = self._serving_model_id()
        chosen = models.get(baseline_id) if baseline_id is not None and baseline_id not in candidates else None
        return {MODEL: [chosen] if chosen else [], BLESSING: [], CANDIDATE: input_dict[CANDIDATE]}

    @staticmethod
    def _earlier_baseline(blessings: list[types.Artifact], candidates: set[int]) -> int | None:
        """The baseline id of the newest evaluation of this candidate (0: it had none)."""
        earlier = [
            b for b in blessings
            if b.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) in candidates
        ]
        if not earlier:
            return None
        newest = max(earlier, key=lambda b: b.id)
        return newest.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY)

    def _serving_model_id(self) -> int | None:
        version = versions.serving_version(self._serving_root)
        record = versions.read_record(self._serving_root, version) if version else None
        return int(record[MODEL_ID_PROPERTY]) if record and record.get(MODEL_ID_PROPERTY) else None


def baseline_resolver(candidate: types.BaseChannel, serving_root: str) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=ServingModelStrategy,
        config={"serving_root": serving_root},
        **{
            MODEL: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            BLESSING: tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
            CANDIDATE: candidate,
        },
    ).with_id("baseline_model")
