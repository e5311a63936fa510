"""`make bench`: the default pipeline cold and unchanged, side by side in one process.

    python -m benchmarks.pipeline_bench [--train-steps N] [--home DIR]

Runs in a fresh home (default: outputs/bench, wiped first) on the default spans:
  span 1 cold -> span 2 (window [1, 2], compared with span 1's model) -> span 2 again, no change.
Prints per-component seconds, totals, and the final evaluation.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from data import materialize
from conveyor import local_run, run_summary
from pipeline import configs

RUNS = (("span 1 cold", 1), ("span 2", 2), ("no change", 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=configs.REPO_ROOT / "outputs" / "bench")
    parser.add_argument("--train-steps", type=int)
    args = parser.parse_args()

    shutil.rmtree(args.home, ignore_errors=True)
    config = configs.load(home=args.home, train_steps=args.train_steps)
    materialize.materialize(config.spans_root)
    summaries = []
    for label, span in RUNS:
        print(f"bench: {label}", flush=True)
        summary = local_run.run(config.replace(span=span))
        if not summary.ok:
            raise SystemExit(f"bench run '{label}' failed: {summary.error}")
        summaries.append(summary)

    components = [name for name, _, _ in summaries[0].timings]
    print()
    print(f"{'component':<22}" + "".join(f"{label:>20}" for label, _ in RUNS))
    for name in components:
        cells = []
        for summary in summaries:
            timing = {n: (status, secs) for n, status, secs in summary.timings}.get(name)
            cells.append(f"{timing[1]:>11.1f} s {timing[0]:<6}" if timing else f"{'-':>20}")
        print(f"{name:<22}" + "".join(cells))
    print(f"{'total (incl. MLMD)':<22}" + "".join(f"{s.seconds:>11.1f} s       " for s in summaries))
    print(f"\ntrain_steps={config.train_steps}, beam={config.beam_mode}; final evaluation (window {summaries[1].window_spans}):")
    print(run_summary.format_summary(summaries[1]))


if __name__ == "__main__":
    main()
