"""The Evaluator's baseline: the latest blessed model *other than the candidate*.

TFX's LatestBlessedModelStrategy returns the latest blessed model, which on a re-run with
unchanged inputs is the (cached) candidate itself: the Evaluator's inputs then differ from the
first run's, so it and Pusher run again and push a duplicate version. Excluding the candidate
keeps a no-change re-run fully cached and compares a new model with its predecessor.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import constants as evaluator_constants

MODEL, BLESSING, CANDIDATE = "model", "model_blessing", "candidate"


class PreviousBlessedModelStrategy(tfx.dsl.experimental.ResolverStrategy):
    """Inputs: every Model, every ModelBlessing, and this run's candidate Model."""

    def resolve_artifacts(
        self, store: Any, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]] | None:
        candidates = {a.id for a in input_dict[CANDIDATE]}
        blessings = {
            b.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY): b
            for b in input_dict[BLESSING]
            if b.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1
        }
        for model in sorted(input_dict[MODEL], key=lambda a: a.id, reverse=True):
            if model.id in blessings and model.id not in candidates:
                return {MODEL: [model], BLESSING: [blessings[model.id]], CANDIDATE: input_dict[CANDIDATE]}
        return {MODEL: [], BLESSING: [], CANDIDATE: input_dict[CANDIDATE]}


def baseline_resolver(candidate: types.BaseChannel) -> tfx.dsl.Resolver:
    return tfx.dsl.Resolver(
        strategy_class=PreviousBlessedModelStrategy,
        **{
            MODEL: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            BLESSING: tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
            CANDIDATE: candidate,
        },
    ).with_id("baseline_model")
