"""When a run the CT controller launches searches the hyperparameters again (re-tuning).

Every run trains with the newest tuning's choice (pipeline/pipeline.py, latest_hyperparameters).
A run the controller launches is a tuning run (`tune`: TFX's Tuner before the Trainer, as `conveyor
tune`) when, by the stated policy (pipeline/configs.py):

  every        `retune_every_retrains` models have been trained since the newest tuning (or since
               the first run, if the pipeline was never tuned), whoever launched them: counted in
               ML Metadata (metadata/hyperparameters.py `trainings_since_tuning`); 0 turns it off;
  recovery     performance fires for the version the previous launch, a performance retrain, pushed
               (or that retrain pushed nothing): new data with the same hyperparameters did not
               bring live accuracy back above the floor (`retune_on_failed_recovery`). Not after a
               retrain that re-tuned already: a second search of the same space would not help.

The decision records why (`retune` in its signals, the reason's `re-tune: ...`, `tune` on the
decision), so `conveyor ct status`, the decision log and `conveyor runs` (launched by `ct: ...,
re-tune`) say it.
"""
from __future__ import annotations

from typing import Any

from ct.decisions import Decision
from pipeline.configs import PipelineConfig


def recovery_failed(history: list[Decision], performance: dict[str, Any]) -> str | None:
    """Why performance firing now means the previous performance retrain did not recover (None: it
    does not)."""
    launched = [d for d in history if d.launched]
    previous = launched[-1] if launched else None
    if not performance.get("low") or previous is None or "performance" not in previous.triggers or previous.tune:
        return None
    if previous.pushed_version is not None and previous.pushed_version != performance.get("version"):
        return None  # performance fires for another version than the one that retrain pushed
    what = f"pushed version {previous.pushed_version}" if previous.pushed_version else "pushed nothing"
    return (
        f"the performance retrain of run {previous.run_id} {what}, and live performance is still low "
        f"({'; '.join(performance.get('reasons', [])) or 'below the floor'})"
    )


def every(config: PipelineConfig, trained: int, tuned_run: str | None) -> str | None:
    """Why the count of models trained since the newest tuning calls for another (None: it does not)."""
    if not config.retune_every_retrains or trained < config.retune_every_retrains:
        return None
    since = f"since the tuning in run {tuned_run}" if tuned_run else "and the pipeline was never tuned"
    return f"{trained} models trained {since} (the policy: every {config.retune_every_retrains})"


def apply(config: PipelineConfig, decision: Decision, history: list[Decision]) -> None:
    """Make the run `decision` launches a tuning run if the policy says so, and record why."""
    from metadata import connection
    from metadata import hyperparameters as hyperparameters_lib

    trained, tuned_run = 0, None
    if connection.store_exists(config):
        store = connection.open_store(connection.connection_config(config))
        trained, tuned_run = hyperparameters_lib.trainings_since_tuning(store, config.pipeline_name)
    recovery = recovery_failed(history, decision.signals.get("performance", {})) if config.retune_on_failed_recovery else None
    reasons = [why for why in (recovery, every(config, trained, tuned_run)) if why]
    decision.signals["retune"] = {
        "due": bool(reasons), "reasons": reasons, "trained_since_tuning": trained, "tuned_run": tuned_run,
        "every": config.retune_every_retrains, "on_failed_recovery": config.retune_on_failed_recovery,
    }
    if reasons:
        decision.tune = True
        decision.reason += "; re-tune: " + "; ".join(reasons)
