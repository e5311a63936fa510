"""`make bench` (second part): Beam DirectRunner in_memory vs multi_processing, per component.

    python -m benchmarks.beam_bench [--rows N] [--workers N] [--train-steps N] [--home DIR] [--skip-synthetic]

Two inputs, each run cold (a fresh home) once per mode:
  default    span 1 of the default data (10,000 trips);
  synthetic  N trips (default 1,000,000) drawn with replacement from the shipped spans (seed 0),
             written as one span in the canonical format.
Prints seconds per component and the in_memory / multi_processing ratio. Figures are reported,
not asserted: they depend on the machine and what else runs on it.
"""
from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from data import materialize, spans_io
from conveyor import local_run
from pipeline import configs
from conveyor.run_summary import RunSummary

MODES = ("in_memory", "multi_processing")


def _synthetic_span(spans_root: Path, rows: int) -> None:
    shipped = [r for relative in materialize.SHIPPED_SPANS.values() for r in spans_io.read_rows(materialize.shipped_csv(relative))]
    spans_io.write_span(spans_root, 1, random.Random(0).choices(shipped, k=rows))


def _run(label: str, spans_root: Path, home: Path, mode: str, workers: int, train_steps: int | None) -> RunSummary:
    shutil.rmtree(home, ignore_errors=True)
    config = configs.load(home=home, spans_root=spans_root, span=1, beam_mode=mode, beam_workers=workers, train_steps=train_steps)
    print(f"bench: {label}, {mode} ({config.beam_args()[-1]})", flush=True)
    summary = local_run.run(config)
    if not summary.ok:
        raise SystemExit(f"bench run {label}/{mode} failed: {summary.error} (log: {summary.log_file})")
    return summary


def _table(label: str, results: dict[str, RunSummary]) -> str:
    seconds = {mode: {name: secs for name, _, secs in summary.timings} for mode, summary in results.items()}
    lines = [f"{label:<22}{MODES[0]:>14}{MODES[1]:>18}{'ratio':>8}"]
    for name in seconds[MODES[0]]:
        a, b = seconds[MODES[0]][name], seconds[MODES[1]].get(name, float("nan"))
        ratio = f"{a / b:>8.2f}" if min(a, b) >= 1 else f"{'-':>8}"  # sub-second steps: noise
        lines.append(f"  {name:<20}{a:>12.1f} s{b:>16.1f} s{ratio}")
    a, b = (results[m].seconds for m in MODES)
    lines.append(f"  {'total':<20}{a:>12.1f} s{b:>16.1f} s{a / b:>8.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=configs.REPO_ROOT / "outputs" / "beam-bench")
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic trips")
    parser.add_argument("--workers", type=int, default=0, help="multi_processing workers (0 = one per core)")
    parser.add_argument("--train-steps", type=int, help="Trainer steps (not Beam; default from configs)")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()

    inputs = {"default (10,000 trips)": args.home / "spans-default"}
    materialize.materialize(inputs["default (10,000 trips)"])
    if not args.skip_synthetic:
        synthetic = args.home / f"spans-synthetic-{args.rows}"
        if not spans_io.existing_spans(synthetic):
            print(f"bench: writing {args.rows:,} synthetic trips", flush=True)
            _synthetic_span(synthetic, args.rows)
        inputs[f"synthetic ({args.rows:,} trips)"] = synthetic
    tables = []
    for label, spans_root in inputs.items():
        results = {mode: _run(label, spans_root, args.home / "home", mode, args.workers, args.train_steps) for mode in MODES}
        tables.append(_table(label, results))
    print("\nseconds per component, cold runs (ratio = in_memory / multi_processing):\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
