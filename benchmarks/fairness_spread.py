"""How far a slice's error-rate gap moves from seed to seed: what the fairness gate's bounds must exceed.

    python -m benchmarks.fairness_spread [--seeds 5] [--span 1] [--work DIR]

Trains the same window (span 1 of the default spans, the default steps) once per seed, each in its
own home, and reads each Evaluator's slice metrics. For every pair of seeds, every slice and every
fairness rate, the widening is |gap of one| - |gap of the other| (gap: the slice's rate minus the
overall rate), on the slices with at least N eval examples of the class the rate is conditioned on
(pipeline/fairness.py), for several N. Prints each rate's largest widening and where it was, and
the spread of the overall rates; docs/pipeline.md#fairness records the figures.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
from pathlib import Path

from conveyor.local import runner
from data import materialize
from pipeline import configs, fairness

MINIMUMS = (10, 20, 30, 50, 100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--span", type=int, default=1)
    parser.add_argument("--work", type=Path, default=configs.REPO_ROOT / "outputs" / "fairness_spread")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    spans = args.work / "spans"
    materialize.materialize(spans)
    metrics = []
    for seed in range(args.seeds):
        config = configs.load(home=args.work / f"seed-{seed}", spans_root=spans, span=args.span, seed=seed)
        summary = runner.run(config)
        assert summary.ok and summary.evaluation, summary.error
        metrics.append(summary.evaluation.metrics)
        print(f"seed {seed}: accuracy {summary.evaluation.metrics['overall']['binary_accuracy']:.4f}", flush=True)
    print(f"largest widening of a slice's gap between two seeds, on the slices with at least N eval examples of the class "
          f"the rate is conditioned on (the gate's fairness_min_examples is {configs.PipelineConfig().fairness_min_examples}):")
    every_rate = {metric: 1.0 for metric in fairness.LABELS}  # every rate judged, none refused
    for minimum in MINIMUMS:
        cells = []
        for metric in fairness.LABELS:
            found = [
                (row.widening, row.slice)
                for a, b in itertools.permutations(range(args.seeds), 2)
                for row in fairness.table(metrics[a], metrics[b], every_rate, minimum)
                if row.metric == metric and row.not_gated is None and row.widening is not None
            ]
            widest = max(found, default=None)
            cells.append(f"{metric} {widest[0]:.4f} on {widest[1]} ({len({f[1] for f in found})} slices)" if widest else f"{metric} -")
        print(f"  N={minimum}: " + "; ".join(cells))
    for metric in fairness.LABELS:
        overall = [m["overall"][metric] for m in metrics]
        print(f"{metric} overall: {', '.join(f'{v:.4f}' for v in overall)} (std {statistics.pstdev(overall):.4f})")

if __name__ == "__main__":
    main()
