"""The search space and the search (models/tuning.py), without a pipeline: the defaults are in the
space and come first, the time budget stops the search after the default's trial, the Trainer's
hyperparameters resolve defaults < tuned < pipeline, and the same data, code and seed give the
same trials, scores and choice (another seed, other trials)."""
from __future__ import annotations

import glob
from dataclasses import asdict

import keras_tuner
import pytest
from tfx.components.trainer import fn_args_utils

from metadata import connection, runs
from models import model, tuning


def _oracle(max_seconds: float, max_trials: int = 5, seed: int = 1) -> tuning.BudgetedOracle:
    hp = keras_tuner.HyperParameters()
    tuning.declare(hp)
    return tuning.BudgetedOracle(
        max_seconds=max_seconds, objective=keras_tuner.Objective("val_auc", "max"), max_trials=max_trials,
        seed=seed, hyperparameters=hp, tune_new_entries=False,
    )


def _drawn(tmp_path, seed: int) -> list[dict]:
    """The values of the first three trials an oracle with `seed` proposes."""
    oracle = _oracle(max_seconds=3600, seed=seed)
    oracle._set_project_dir(str(tmp_path / f"seed-{seed}"), "search")
    values = []
    for _ in range(3):
        trial = oracle.create_trial("tuner0")
        values.append(dict(trial.hyperparameters.values))
        _finish(oracle, trial, 0.9)
    return values


def _finish(oracle: tuning.BudgetedOracle, trial: keras_tuner.engine.trial.Trial, score: float) -> None:
    oracle.update_trial(trial.trial_id, {"val_auc": score})
    trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
    oracle.end_trial(trial)


def test_every_default_is_in_the_search_space_and_declares_the_default_hparams():
    hp = keras_tuner.HyperParameters()
    assert tuning.declare(hp) == model.HParams()
    defaults = asdict(model.HParams())
    for name, choices in tuning.SEARCH_SPACE.items():
        assert model.HParams.from_config({name: hp.values[name]}) == model.HParams() and hp.values[name] in choices, name
    assert set(tuning.SEARCH_SPACE) == set(defaults) - {"epochs"}  # every hyperparameter but the step schedule


def test_the_first_trial_is_the_default_and_the_next_ones_come_from_the_space(tmp_path):
    oracle = _oracle(max_seconds=3600)
    oracle._set_project_dir(str(tmp_path), "search")
    first = oracle.create_trial("tuner0")
    assert model.HParams.from_config(first.hyperparameters.values) == model.HParams()
    _finish(oracle, first, 0.9)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING" and second.hyperparameters.values != first.hyperparameters.values
    assert all(second.hyperparameters.values[name] in choices for name, choices in tuning.SEARCH_SPACE.items())
    assert oracle.ended_by == "trials"


def test_the_oracle_draws_the_same_trials_for_the_same_seed_and_others_for_another(tmp_path):
    first, again, other = _drawn(tmp_path / "a", 1), _drawn(tmp_path / "b", 1), _drawn(tmp_path / "c", 2)
    assert first == again
    assert other[0] == first[0] and other[1:] != first[1:]  # the defaults first, whatever the seed


def test_the_time_budget_stops_the_search_after_the_defaults_trial(tmp_path):
    oracle = _oracle(max_seconds=0)
    oracle._set_project_dir(str(tmp_path), "search")
    first = oracle.create_trial("tuner0")
    assert first.status == "RUNNING"  # the default always runs
    _finish(oracle, first, 0.9)
    assert oracle.create_trial("tuner0").status == "STOPPED" and oracle.ended_by == "time"


def test_the_trainer_takes_defaults_then_the_tuned_values_then_the_pipelines_overrides():
    tuned = {"values": {"learning_rate": 0.01, "hidden_units": "128-64-32", "dropout": 0.3}}
    assert model.resolve_hparams(None, {"seed": 0}) == model.HParams()
    assert model.resolve_hparams(tuned, {"seed": 0}) == model.HParams(learning_rate=0.01, hidden_units=(128, 64, 32), dropout=0.3)
    assert model.resolve_hparams(tuned, {"dropout": 0.0, "seed": 0}) == model.HParams(learning_rate=0.01, hidden_units=(128, 64, 32), dropout=0.0)


def _search(small_run, working_dir, seed: int) -> list[tuple[dict, float]]:
    """A 2-trial search of 30 steps on small_run's window, in this process: each trial's values and score."""
    config, summary = small_run
    run = runs.load_run(connection.open_metadata(config), summary.run_id)
    window = [a.uri for a in run.inputs("Trainer", "examples")]
    fn_args = fn_args_utils.FnArgs(
        train_files=[f"{uri}/Split-train/*" for uri in window],
        eval_files=[f"{uri}/Split-eval/*" for uri in window],
        transform_graph_path=run.output("Transform", "transform_graph").uri,
        train_steps=30, eval_steps=5, working_dir=str(working_dir),
        custom_config={"seed": seed, "max_trials": 2, "max_seconds": 600},
    )
    result = tuning.tuner_fn(fn_args)
    result.tuner.search(**result.fit_kwargs)
    oracle = result.tuner.oracle
    assert glob.glob(f"{working_dir}/{tuning.TENSORBOARD_DIR}/*/execution0/events.out.tfevents.*")  # one log per trial
    return [(oracle.trials[t].hyperparameters.values, oracle.trials[t].score) for t in oracle.start_order]


@pytest.mark.timeout(900)
def test_the_same_data_code_and_seed_give_the_same_trials_and_scores(small_run, tmp_path):
    first = _search(small_run, tmp_path / "a", seed=0)
    again = _search(small_run, tmp_path / "b", seed=0)
    assert first == again and len(first) == 2  # values and scores exactly, each trial seeded alike
