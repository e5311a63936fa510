"""The CT controller's re-tune policy (ct/retune.py), on real decisions: after a performance retrain
that did not bring live accuracy back, and every N models trained since the newest tuning; and
never after a retrain that re-tuned already. (The whole chain, a tick launching a tuning run, is in
tests/test_tuning.py.)"""
from __future__ import annotations

from ct import retune
from ct.decisions import OK, Decision
from pipeline import configs

LOW = {"low": True, "version": "200", "reasons": ["live accuracy 0.700 < 0.75"]}


def _launched(triggers: list[str], pushed: str | None, tune: bool = False) -> Decision:
    return Decision(time=1.0, fired=True, triggers=triggers, reason="", outcome=OK, run_id="r1", pushed_version=pushed, tune=tune)


def test_a_performance_retrain_that_did_not_recover_calls_for_a_re_tune():
    why = retune.recovery_failed([_launched(["performance"], "200")], LOW)
    assert why == "the performance retrain of run r1 pushed version 200, and live performance is still low (live accuracy 0.700 < 0.75)"
    assert "pushed nothing" in retune.recovery_failed([_launched(["performance", "drift"], None)], LOW)


def test_no_re_tune_after_another_trigger_a_recovered_version_or_a_retrain_that_re_tuned():
    assert retune.recovery_failed([_launched(["performance"], "200")], {**LOW, "low": False}) is None
    assert retune.recovery_failed([_launched(["new_data"], "200")], LOW) is None
    assert retune.recovery_failed([_launched(["performance"], "199")], LOW) is None  # another version is failing now
    assert retune.recovery_failed([_launched(["performance"], "200", tune=True)], LOW) is None
    assert retune.recovery_failed([], LOW) is None
    unlaunched = Decision(time=2.0, fired=False, triggers=[], reason="nothing")
    assert retune.recovery_failed([_launched(["performance"], "200"), unlaunched], LOW) is not None  # the last launch counts


def test_every_n_models_trained_since_the_newest_tuning():
    config = configs.PipelineConfig(retune_every_retrains=3)
    assert retune.every(config, 2, "t") is None
    assert retune.every(config, 3, "t") == "3 models trained since the tuning in run t (the policy: every 3)"
    assert retune.every(config, 4, None) == "4 models trained and the pipeline was never tuned (the policy: every 3)"
    assert retune.every(configs.PipelineConfig(retune_every_retrains=0), 100, None) is None
