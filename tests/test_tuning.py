"""Tuning in the DAG, through the installed command: `conveyor tune` searches with TFX's Tuner and
trains with the best; the next run on a new span trains with the same choice (the resolver);
every model's hyperparameters are in ML Metadata, shown by the summary and `conveyor lineage`;
`conveyor runs` lists the runs and `conveyor runs compare` puts two side by side, also as HTML;
`conveyor tensorboard` shows the trials in the HParams dashboard.

One home (`tuned`): small_run's (span 1 trained with the defaults, run #1), then `conveyor tune`
with a budget of 3 trials of 100 steps (run #2), then span 2 arrives and `conveyor run` trains on
it (run #3). Its spans root has markup in its name, which the HTML page must show as text.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

import pytest

from data import spans_io
from metadata import connection, hyperparameters, run_records, runs
from models import model
from pipeline import artifact_properties as props
from pipeline import configs, evaluation, versions
from tests.conftest import SMALL_SPAN_ROWS
from tests.serving_helpers import CONVEYOR
from tests.test_viewers import Server

TRIALS = 3


def conveyor(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tuned(small_run, shipped_rows, tmp_path_factory):
    """(config, stdout of `conveyor tune`, stdout of the run on span 2)."""
    first, _ = small_run
    base = tmp_path_factory.mktemp("tuned")
    config = first.replace(home=base / "home", spans_root=base / "spans <i>&amp;", span=None)
    shutil.copytree(first.home, config.home)
    shutil.copytree(first.spans_root, config.spans_root)
    where = ("--home", str(config.home), "--spans-root", str(config.spans_root), "--train-steps", "100", "--eval-steps", "5")
    tune = conveyor("tune", *where, "--max-trials", str(TRIALS))
    assert tune.returncode in (0, 1) and "FAILED" not in tune.stdout, tune.stdout + tune.stderr
    spans_io.write_span(config.spans_root, 2, shipped_rows[SMALL_SPAN_ROWS : 2 * SMALL_SPAN_ROWS])
    later = conveyor("run", *where)
    assert later.returncode in (0, 1) and "FAILED" not in later.stdout, later.stdout + later.stderr
    return config, tune.stdout, later.stdout


def _store(config: configs.PipelineConfig):
    return connection.open_store(connection.connection_config(config))


def _run(config: configs.PipelineConfig, number: int) -> runs.Run:
    store = _store(config)
    return runs.load_run(store, runs.run_ids(store, config.pipeline_name)[number - 1])


def _best(config: configs.PipelineConfig):
    return _run(config, 2).output("Tuner", "best_hyperparameters")


def _trained_with(run: runs.Run) -> dict:
    return json.loads(runs.custom_property(run.output("Trainer", "model"), props.HYPERPARAMETERS_PROPERTY))


def _as_recorded(hparams: model.HParams) -> dict:
    return json.loads(json.dumps(asdict(hparams)))


def _text(value: object) -> str:
    """A hyperparameter as the command line prints it."""
    if isinstance(value, list):
        return "-".join(map(str, value))
    return format(value, "g") if isinstance(value, float) else str(value)


def _listed(values: dict) -> str:
    return ", ".join(f"{name}={_text(value)}" for name, value in sorted(values.items()))


def test_tune_searches_the_window_with_the_default_first_and_trains_with_the_best(tuned):
    config, out, _ = tuned
    assert "conveyor: tuning conveyor-taxi on the window of span 1: at most 3 trials of 100 steps" in out
    best = _best(config)
    assert best is not None  # TFX's Tuner ran in this run
    prop = lambda name: runs.custom_property(best, name)  # noqa: E731
    assert (prop(props.TRIALS_PROPERTY), prop(props.MAX_TRIALS_PROPERTY), prop(props.ENDED_BY_PROPERTY)) == (TRIALS, TRIALS, "trials")
    assert prop(props.OBJECTIVE_PROPERTY) == "val_auc"
    assert prop(props.BEST_SCORE_PROPERTY) >= prop(props.DEFAULT_SCORE_PROPERTY)  # the default was a trial
    trials = json.loads(Path(_run(config, 2).output("Tuner", "tuner_results").uri, "tuner_results.json").read_text())
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2"]
    first = next(t for t in trials if t["trial_id"] == "0")
    assert model.HParams.from_config(first) == model.HParams()  # the first trial is the defaults
    chosen = json.loads(prop(props.TUNED_VALUES_PROPERTY))
    assert chosen == json.loads(Path(best.uri, "best_hyperparameters.txt").read_text())["values"]
    assert _trained_with(_run(config, 2)) == _as_recorded(model.HParams.from_config(chosen))
    run_id = _run(config, 2).run_id
    assert f"hyperparameters: {_listed(_trained_with(_run(config, 2)))}\n" in out
    assert (
        f"  from tuned in run {run_id} (val_auc {prop(props.BEST_SCORE_PROPERTY):.4f} vs the default's "
        f"{prop(props.DEFAULT_SCORE_PROPERTY):.4f}; 3 of 3 trials)\n"
    ) in out


def test_the_next_run_on_a_new_span_trains_with_the_tuned_hyperparameters(tuned):
    config, _, out = tuned
    later, tune = _run(config, 3), _run(config, 2)
    assert later.span == 2 and later.window_spans == [1, 2]
    assert [a.id for a in later.inputs("Trainer", "hyperparameters")] == [_best(config).id]  # the resolver's choice
    assert _trained_with(later) == _trained_with(tune)
    assert f"hyperparameters: {_listed(_trained_with(later))}\n  from tuned in run {tune.run_id} (val_auc" in out


def test_the_run_report_shows_every_hyperparameter_and_where_it_came_from(tuned):
    import html

    config, _, out = tuned
    page = Path(re.search(r"^report: (.*\.html)$", out, re.M).group(1)).read_text()
    source = re.search(r'<p id="hyperparameters-source">(.*?)</p>', page).group(1)
    assert html.unescape(source).startswith(f"from tuned in run {_run(config, 2).run_id} (val_auc ")
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">([^<]*)</td><td>(\w+)</td></tr>", page)
    trained = _trained_with(_run(config, 3))
    assert rows == [(name, _text(trained[name]), "default" if name == "epochs" else "tuned") for name in sorted(trained)]


def test_the_models_trained_since_the_newest_tuning_are_counted(tuned):
    config, _, _ = tuned
    assert hyperparameters.trainings_since_tuning(_store(config), config.pipeline_name) == (1, _run(config, 2).run_id)


def test_a_model_trained_before_any_tuning_records_the_defaults(tuned):
    config, _, _ = tuned
    first = _run(config, 1)
    assert not first.inputs("Trainer", "hyperparameters")
    assert _trained_with(first) == _as_recorded(model.HParams())


def test_lineage_shows_every_hyperparameter_and_where_it_came_from(tuned):
    config, _, _ = tuned
    version = versions.serving_version(config.serving_root)
    pushed_by = next(n for n in (3, 2, 1) if _pushed(config, _run(config, n).run_id) == version)
    done = conveyor("lineage", "--home", str(config.home))
    assert done.returncode == 0, done.stderr
    line = re.search(r"hyperparameters (.*)\n +from (.*)\n", done.stdout)
    assert line, done.stdout
    assert line.group(1) == _listed(_trained_with(_run(config, pushed_by)))
    expected = f"tuned in run {_run(config, 2).run_id} (val_auc " if pushed_by > 1 else "default"
    assert line.group(2).startswith(expected)


def test_runs_lists_every_run_with_its_hyperparameter_source_metrics_and_push(tuned):
    config, _, _ = tuned
    done = conveyor("runs", "--home", str(config.home))
    assert done.returncode == 0, done.stderr
    head, *rows = done.stdout.splitlines()
    assert head.split()[:4] == ["#", "run", "id", "started"] and len(rows) == 3
    store = _store(config)
    records = run_records.all_runs(config, store)
    for row, record, launched, source in zip(rows, records, ("conveyor run", "conveyor tune", "conveyor run"), ("default", "tuned here", "tuned in #2")):
        assert row.startswith(f"{record.number}  {record.run_id}  ")
        assert f"  {launched}  " in row and f"  {source}  " in row
        assert f"{record.metrics['auc']:.4f}" in row and f"{record.metrics['binary_accuracy']:.4f}" in row
        assert (record.pushed_version or "-") in row and record.pushed_version == _pushed(config, record.run_id)
    assert [r.window_spans for r in records] == [[1], [1], [1, 2]]
    last = conveyor("runs", "--home", str(config.home), "--last", "1")
    assert [row.split() for row in last.stdout.splitlines()[1:]] == [rows[-1].split()]  # numbered among all runs


def _pushed(config: configs.PipelineConfig, run_id: str) -> str | None:
    pushed = runs.load_run(_store(config), run_id).output("Pusher", "pushed_model")
    return str(runs.custom_property(pushed, "pushed_version")) if pushed and runs.custom_property(pushed, "pushed") == 1 else None


def _row(text: str, label: str) -> list[str]:
    """A compared row's cells after its label (marker first: '*' if A and B differ)."""
    found = re.search(rf"^([* ]) {re.escape(label)} +(.*)$", text, re.M)
    assert found, (label, text)
    return [found.group(1), *re.split(r"  +", found.group(2).strip())]


def test_runs_compare_puts_hyperparameters_metrics_data_and_blessing_side_by_side(tuned, tmp_path):
    config, _, _ = tuned
    page = tmp_path / "compare.html"
    done = conveyor("runs", "compare", "1", _run(config, 3).run_id, "--home", str(config.home), "--html", str(page))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    a, b = _run(config, 1), _run(config, 3)
    for name, value in _trained_with(a).items():
        other = _trained_with(b)[name]
        origin = "tuned" if name != "epochs" else "default"
        assert _row(out, name) == ["*" if value != other else " ", f"{_text(value)} (default)", f"{_text(other)} ({origin})"]
    ea, eb = (evaluation.load_evaluation(r.output("Evaluator", "evaluation").uri) for r in (a, b))
    for metric in ("binary_accuracy", "auc"):
        x, y = ea.metrics["overall"][metric], eb.metrics["overall"][metric]
        assert _row(out, metric)[1:] == [f"{x:.4f}", f"{y:.4f}", f"{round(y - x, 4) + 0.0:+.4f}"]
    slice_line = re.search(r"^  trip_start_hour=13 +(\d+)/(\d+) +(\S+) (\S+) (\S+) +(\S+) (\S+) (\S+)$", out, re.M)
    assert slice_line, out
    s13 = [e.metrics["trip_start_hour=13"] for e in (ea, eb)]
    assert slice_line.groups()[:5] == (f"{s13[0]['example_count']:.0f}", f"{s13[1]['example_count']:.0f}", f"{s13[0]['binary_accuracy']:.4f}",
                                       f"{s13[1]['binary_accuracy']:.4f}", f"{round(s13[1]['binary_accuracy'] - s13[0]['binary_accuracy'], 4) + 0.0:+.4f}")
    assert _row(out, "training window")[1:] == ["[1]", "[1, 2]"]
    assert _row(out, "span 2 read as")[1:] == ["A not in the window"] and "B split:all,num_files:1" in out
    assert _row(out, "seconds")[0] == "*" and "component seconds" in out and _row(out, "Trainer")[1:3]
    assert "A: blessed: every gated threshold met" in out or "A: not blessed:" in out
    assert _row(out, "source")[1].startswith("A default") and f"B tuned in run {_run(config, 2).run_id}" in out
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert "spans &lt;i&gt;&amp;amp;" in html and "spans <i>" not in html  # the spans root's name, as text
    assert f"{ea.metrics['overall']['auc']:.4f}" in html and "hidden_units" in html and "trip_start_hour=13" in html
    assert f"written: {page}" in out


def test_tensorboard_shows_the_trials_in_the_hparams_dashboard(tuned):
    config, _, _ = tuned
    server = Server("tensorboard", "--home", str(config.home), "--port", "0")
    try:
        url = server.wait_for(r"TensorBoard at (http://127\.0\.0\.1:\d+/)").group(1)
        request = urllib.request.Request(url + "data/plugin/hparams/experiment", data=b'{"experimentName": ""}',
                                         headers={"Content-Type": "application/json"})
        deadline, names = time.monotonic() + 90, set()
        while time.monotonic() < deadline and not names:
            with urllib.request.urlopen(request, timeout=30) as response:
                names = {info["name"] for info in json.load(response).get("hparamInfos", [])}
            time.sleep(1)
        assert names == {"learning_rate", "hidden_units", "embedding_dim", "dropout", "batch_size"}
        with urllib.request.urlopen(url + "data/runs", timeout=30) as response:
            listed = json.load(response)
        assert {"trainer/train", "tuner/0/execution0"} <= set(listed), listed
    finally:
        server.stop()


def test_a_ct_tick_re_tunes_by_its_policy_and_records_why(tuned, tmp_path):
    """On a copy of the home: one model trained since the tuning, and the policy says every 1, so
    the tick's run searches again (2 trials) and the decision, `ct status` and `runs` say why."""
    import os

    from ct import decisions

    source, _, _ = tuned
    config = source.replace(home=tmp_path / "home")
    shutil.copytree(source.home, config.home)
    env = {**os.environ, "CONVEYOR_RETUNE_EVERY_RETRAINS": "1", "CONVEYOR_TUNE_MAX_TRIALS": "2",
           "CONVEYOR_TRAIN_STEPS": "100", "CONVEYOR_EVAL_STEPS": "5"}
    done = subprocess.run([str(CONVEYOR), "ct", "run", "--reason", "re-tune check", "--home", str(config.home),
                           "--spans-root", str(config.spans_root)], capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    [decision] = decisions.history(config)
    expected = f"re-tune: 1 models trained since the tuning in run {_run(config, 2).run_id} (the policy: every 1)"
    assert decision.tune and expected in decision.reason and decision.signals["retune"]["due"]
    assert _run(config, 4).run_id == decision.run_id and _run(config, 4).output("Tuner", "best_hyperparameters") is not None
    status = conveyor("ct", "status", "--home", str(config.home))
    assert expected in status.stdout, status.stdout
    last = conveyor("runs", "--home", str(config.home), "--last", "1").stdout.splitlines()[-1]
    assert "  ct: on_demand, re-tune  " in last and "  tuned here  " in last
    assert hyperparameters.trainings_since_tuning(_store(config), config.pipeline_name) == (0, decision.run_id)
