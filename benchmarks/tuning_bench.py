"""`make bench-tuning`: the tuned model against the default one, on the same eval data, over seeds.

    python -m benchmarks.tuning_bench [--seeds 0 1 2] [--max-trials N] [--max-seconds S] [--workdir DIR]

For each seed, in a home of its own, as a person runs it (`CONVEYOR_SEED=s`): `conveyor run` on
the two default spans (span 1, then span 2: the default hyperparameters), then `conveyor tune` on
the same window. The tuning run's Evaluator judges the tuned model against the model serving, the
default one trained on the same window with the same seed, on the same eval split, which the search
never saw (its trials validate on a fifth of the train split). Its evaluation holds both models'
metrics (pipeline/evaluation.py `load_evaluation`), read back from ML Metadata.

Reported per seed: the search's own figures (the default's and the best validation score, trials,
seconds, the chosen values) and both models' eval AUC and accuracy; then the gain (tuned - default)
as mean, standard deviation and range over the seeds, next to the default's own seed-to-seed
spread. A gain inside that spread is no gain, and is said so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data import materialize
from metadata import connection, runs
from metadata import hyperparameters as hyperparameters_lib
from pipeline import configs, evaluation

CONVEYOR = Path(sys.executable).parent / "conveyor"
METRICS = ("auc", "binary_accuracy")


def _conveyor(home: Path, spans: Path, seed: int, *args: str) -> float:
    """`conveyor ARGS --home HOME` with CONVEYOR_SEED=seed; its wall seconds (exit 1, a refused
    push, is an outcome here, not a failure)."""
    started = time.monotonic()
    done = subprocess.run(
        [str(CONVEYOR), *args, "--home", str(home), "--spans-root", str(spans)],
        env={**os.environ, "CONVEYOR_SEED": str(seed)}, capture_output=True, text=True,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"conveyor {' '.join(args)} (seed {seed}) exited {done.returncode}: {done.stderr[-2000:]}")
    return time.monotonic() - started


def one_seed(workdir: Path, spans: Path, seed: int, max_trials: int | None, max_seconds: float | None) -> dict:
    home = workdir / f"seed-{seed}"
    run_seconds = _conveyor(home, spans, seed, "run")
    budget = [*(["--max-trials", str(max_trials)] if max_trials else []), *(["--max-seconds", str(max_seconds)] if max_seconds else [])]
    tune_seconds = _conveyor(home, spans, seed, "tune", *budget)
    config = configs.load(home=home)
    store = connection.open_store(connection.connection_config(config))
    tune = runs.latest_run(store, config.pipeline_name)
    found = hyperparameters_lib.of_trainer(store, tune.nodes["Trainer"])
    result = evaluation.load_evaluation(tune.output("Evaluator", "evaluation").uri)
    assert result.baseline, "the tuning run had no baseline to compare with"
    search = found.tuning
    return {
        "seed": seed,
        "tuned": {m: result.metrics[evaluation.OVERALL][m] for m in METRICS},
        "default": {m: result.baseline[m] for m in METRICS},
        "examples": int(result.metrics[evaluation.OVERALL]["example_count"]),
        "search": {
            "objective": search.objective, "default_score": search.default_score, "best_score": search.best_score,
            "trials": search.trials, "ended_by": search.ended_by, "values": search.values,
        },
        "blessed": result.blessed,
        "seconds": {"run (2 spans)": round(run_seconds, 1), "tune": round(tune_seconds, 1),
                    "Tuner": round(tune.nodes["Tuner"].seconds, 1)},
    }


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.4f} ± {sd:.4f} (range {min(values):+.4f} .. {max(values):+.4f})"


def report(results: list[dict]) -> str:
    """Per seed: the search's figures and both models' eval metrics; then the gains over the seeds."""
    lines = [f"{'seed':>4}  {'search: default -> best':<26} {'trials':>6}  {'eval AUC: default -> tuned':<34} "
             f"{'accuracy: default -> tuned':<34} {'blessed':<8} {'Tuner s':>7}"]
    for r in results:
        s, d, t = r["search"], r["default"], r["tuned"]
        lines.append(
            f"{r['seed']:>4}  {s['default_score']:.4f} -> {s['best_score']:.4f} {s['objective']:<8} {s['trials']:>3} {s['ended_by']:<5} "
            f"{d['auc']:.4f} -> {t['auc']:.4f} ({t['auc'] - d['auc']:+.4f})        "
            f"{d['binary_accuracy']:.4f} -> {t['binary_accuracy']:.4f} ({t['binary_accuracy'] - d['binary_accuracy']:+.4f})        "
            f"{'yes' if r['blessed'] else 'NO':<8} {r['seconds']['Tuner']:>7}"
        )
    lines += [""] + [f"seed {r['seed']} chose: {hyperparameters_lib.format_values(r['search']['values'])}" for r in results] + [""]
    for metric in METRICS:
        gains = [r["tuned"][metric] - r["default"][metric] for r in results]
        defaults = [r["default"][metric] for r in results]
        sd = statistics.stdev(defaults) if len(defaults) > 1 else 0.0
        verdict = "within" if abs(statistics.mean(gains)) <= sd else "outside"
        lines.append(
            f"gain in eval {metric} (tuned - default, {len(results)} seeds, {results[0]['examples']} eval examples): {_spread(gains)}; "
            f"the default's own seed-to-seed sd {sd:.4f}: the mean gain is {verdict} it"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-trials", type=int, help="the search's trial budget (default: conveyor tune's)")
    parser.add_argument("--max-seconds", type=float, help="the search's time budget (default: conveyor tune's)")
    parser.add_argument("--workdir", type=Path, help="where the homes go (default: a new temp folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="conveyor-bench-tuning-"))
    spans = workdir / "spans"
    materialize.materialize(spans)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: conveyor run (spans 1, 2), then conveyor tune ...", flush=True)
        results.append(one_seed(workdir, spans, seed, args.max_trials, args.max_seconds))
    (workdir / "tuning.json").write_text(json.dumps(results, indent=1))
    print(f"\ntuned vs default, same window and eval split, per seed (started {started}; homes in {workdir})")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
