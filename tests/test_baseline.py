"""The Evaluator's baseline (history="mlmd"): the model serving now, rollback-aware, never a model
InfraCheck refused; a candidate evaluated before keeps that evaluation's baseline (cache)."""
from __future__ import annotations

from tfx.components.evaluator import constants
from tfx.types import standard_artifacts

from pipeline import versions
from pipeline.components import baseline_model
from tests.serving_helpers import publish_fake


def _model(artifact_id: int) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


def _blessing(artifact_id: int, model_id: int, blessed: int, baseline_id: int | None = None) -> standard_artifacts.ModelBlessing:
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = artifact_id
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model_id)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, blessed)
    if baseline_id is not None:
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline_id)
    return blessing


def _resolve(root, candidate: int, models: dict, blessings: list) -> int | None:
    strategy = baseline_model.ServingModelStrategy(serving_root=str(root))
    found = strategy.resolve_artifacts(
        None, {"model": list(models.values()), "model_blessing": blessings, "candidate": [models[candidate]]}
    )
    return found["model"][0].id if found["model"] else None


def test_the_baseline_is_the_serving_model_never_a_newer_refused_one_and_follows_a_rollback(tmp_path):
    root = tmp_path / "serving_model"
    models = {i: _model(i) for i in (10, 20, 30, 40)}
    # 10 and 20 were pushed; 30 was blessed by the Evaluator but refused by InfraCheck (never pushed).
    blessings = [_blessing(1, 10, 1), _blessing(2, 20, 1, baseline_id=10), _blessing(3, 30, 1, baseline_id=20)]
    publish_fake(root, "100", {"model_id": 10})
    publish_fake(root, "200", {"model_id": 20})
    assert _resolve(root, 40, models, blessings) == 20
    versions.write_rollback(root, "100")
    assert _resolve(root, 40, models, blessings) == 10  # rollback-aware
    assert _resolve(root, 10, models, blessings) is None  # 10's own first evaluation had no baseline


def test_a_candidate_evaluated_before_keeps_its_baseline_and_nothing_serving_means_none(tmp_path):
    root = tmp_path / "serving_model"
    models = {i: _model(i) for i in (10, 20, 30)}
    assert _resolve(root, 10, models, []) is None  # nothing pushed yet
    publish_fake(root, "100", {"model_id": 10})
    publish_fake(root, "200", {"model_id": 30})
    # 20 was evaluated against 10 and refused; re-run unchanged while 30 serves: still against 10.
    assert _resolve(root, 20, models, [_blessing(1, 20, 0, baseline_id=10)]) == 10
    assert _resolve(root, 30, models, [_blessing(2, 30, 1, baseline_id=10)]) == 10  # never itself
