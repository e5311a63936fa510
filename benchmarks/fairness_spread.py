"""How far a slice's error-rate gap moves from seed to seed: what the fairness gate's bounds must exceed.

    python -m benchmarks.fairness_spread [--seeds 5] [--span 1] [--work DIR]

Trains the same window (span 1 of the default spans, the default steps) once per seed, each in its
own home, and reads each Evaluator's slice metrics. For every pair of seeds, every slice and every
fairness rate, the widening is |gap of one| - |gap of the other| (gap: the slice's rate minus the
overall rate), on the slices the gate would judge (pipeline/fairness.py: enough eval examples of
the class the rate is conditioned on). Prints each rate's largest widening and where it was, and the
spread of the overall rates; docs/pipeline.md#fairness records the figures.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
from pathlib import Path

from conveyor.local import runner
from data import materialize
from pipeline import configs, evaluation, fairness


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
    gate = evaluation.Gate.from_config(configs.PipelineConfig())
    rates = {metric: [] for metric in fairness.LABELS}
    for a, b in itertools.permutations(range(args.seeds), 2):
        no_bounds = {metric: 1.0 for metric in fairness.LABELS}  # every rate gated, none refused
        for row in fairness.table(metrics[a], metrics[b], no_bounds, gate.min_slice_examples):
            if row.not_gated is None and row.widening is not None:
                rates[row.metric].append((row.widening, row.slice, a, b))
    for metric, found in rates.items():
        overall = [m["overall"][metric] for m in metrics]
        widest = max(found) if found else None
        where = f"{widest[1]} (seed {widest[2]} against {widest[3]})" if widest else "-"
        print(
            f"{metric}: overall {', '.join(f'{v:.4f}' for v in overall)} (std {statistics.pstdev(overall):.4f}); "
            f"largest widening {widest[0] if widest else float('nan'):.4f} on {where}; {len({r[1] for r in found})} slices judged"
        )


if __name__ == "__main__":
    main()
