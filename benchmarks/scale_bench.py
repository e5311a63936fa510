"""`make bench-scale`: the data half of the pipeline at 100k, 1M and 5M trips, per Beam mode.

    python -m benchmarks.scale_bench [--rows 100000,1000000,5000000] [--modes in_memory,multi_processing]
                                     [--workers N] [--workdir DIR]

For each size, one span of synthetic trips (drawn with replacement from the shipped spans, seed 0,
in the canonical CSV format) goes cold through CsvExampleGen, StatisticsGen, ExampleValidator,
DataGate and Transform (analysis) in each local Beam mode, one process per pass
(benchmarks/scale_run.py, measured by benchmarks/timed_run.py). Prints seconds and rows/s per
component, peak RSS (the pipeline process, and its largest Beam worker in multi_processing), the
1M / 100k ratio per component (linear would be 10x), and a plain pandas `read_csv().describe()`
over the same CSV as the floor StatisticsGen is compared with. The 5M pass takes the better part
of an hour on two cores; `--rows 100000,1000000` skips it.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.pipeline_bench import timed
from data import materialize, spans_io
from models import features
from pipeline import configs

COLUMNS = (
    ("ExampleGen", ("CsvExampleGen",)),
    ("StatisticsGen", ("StatisticsGen",)),
    ("Validate", ("ExampleValidator", "DataGate")),
    ("Transform", ("Transform",)),
)
GOAL_RATIO = 11.0  # seconds at 1M / seconds at 100k
GOAL_RSS_MB = 8 * 1024
_DESCRIBE = """
import json, resource, sys, time
import pandas as pd
started = time.monotonic()
pd.read_csv(sys.argv[1]).describe(include="all")
print(json.dumps({"seconds": time.monotonic() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic_span(spans_root: Path, rows: int) -> Path:
    """Span 1 of `rows` trips drawn with replacement from the shipped spans (seed 0)."""
    target = spans_io.span_dir(spans_root, 1) / spans_io.SPAN_FILE
    if target.exists():
        return target
    lines = []
    for relative in materialize.SHIPPED_SPANS.values():
        for row in spans_io.read_rows(materialize.shipped_csv(relative)):
            out = io.StringIO()
            csv.writer(out).writerow([spans_io.format_value(c, row.get(c)) for c in features.active().csv_columns])
            lines.append(out.getvalue())  # each shipped trip formatted once, by the canonical writer
    rng = random.Random(0)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with open(partial, "w", newline="") as handle:
        csv.writer(handle).writerow(features.active().csv_columns)
        for start in range(0, rows, 100_000):
            handle.writelines(rng.choices(lines, k=min(100_000, rows - start)))
    os.replace(partial, target)
    return target


def describe_floor(csv_path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _DESCRIBE, str(csv_path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _seconds(record: dict) -> dict[str, tuple[float, float]]:
    by_node = {name: (wall, cpu) for name, _, wall, cpu in record["components"]}
    return {col: tuple(sum(by_node.get(n, (0.0, 0.0))[i] for n in nodes) for i in (0, 1)) for col, nodes in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=configs.REPO_ROOT / "outputs" / "bench-scale")
    parser.add_argument("--rows", default="100000,1000000,5000000", help="comma-separated sizes")
    parser.add_argument("--modes", default="in_memory,multi_processing")
    parser.add_argument("--workers", type=int, default=0, help="multi_processing workers (0 = one per core)")
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    modes = args.modes.split(",")

    load_before = os.getloadavg()
    results: dict[tuple[int, str], dict] = {}
    floors: dict[int, dict] = {}
    for rows in sizes:
        spans_root = args.workdir / f"spans-{rows}"
        print(f"bench-scale: {rows:,} synthetic trips", flush=True)
        csv_path = synthetic_span(spans_root, rows)
        floors[rows] = describe_floor(csv_path)
        for mode in modes:
            home = args.workdir / f"home-{rows}-{mode}"
            shutil.rmtree(home, ignore_errors=True)
            print(f"bench-scale: {rows:,} trips, {mode}", flush=True)
            script = str(Path(__file__).with_name("scale_run.py"))
            results[rows, mode] = timed(args.workdir / f"scale-{rows}-{mode}.json", "script",
                                        [script, str(home), str(spans_root), mode, str(args.workers)])
            shutil.rmtree(home, ignore_errors=True)
    load_after = os.getloadavg()

    workers = args.workers or os.cpu_count()
    print(f"\nseconds (wall) and rows/s per component, cold; multi_processing with {workers} workers\n")
    print(f"{'trips':>10} {'mode':<17}" + "".join(f"{name:>24}" for name, _ in COLUMNS) + f"{'peak RSS MB':>18}")
    for (rows, mode), record in results.items():
        cells = "".join(f"{wall:>9.1f} s {rows / wall:>8,.0f}/s  " if wall else f"{'-':>24}" for wall, _ in _seconds(record).values())
        rss = f"{record['peak_rss_mb']:.0f}" + (f" / {record['children_peak_rss_mb']:.0f}" if mode == "multi_processing" else "")
        print(f"{rows:>10,} {mode:<17}{cells}{rss:>18}")
    print("  (peak RSS: the pipeline process / its largest Beam worker)")
    for small, large in ((100_000, 1_000_000),):
        if all((s, m) in results for s in (small, large) for m in modes):
            print(f"\n{large:,} / {small:,} seconds per component (linear = 10x; goal <= {GOAL_RATIO:g}x)")
            for mode in modes:
                a, b = _seconds(results[small, mode]), _seconds(results[large, mode])
                cells = "".join(f"{b[c][0] / a[c][0]:>23.1f}x" for c, _ in COLUMNS)
                print(f"{'':>10} {mode:<17}{cells}")
    worst_rss = max(max(r["peak_rss_mb"], r["children_peak_rss_mb"]) for r in results.values())
    print(f"\nlargest peak RSS {worst_rss:,.0f} MB (goal < {GOAL_RSS_MB:,} MB: {'met' if worst_rss < GOAL_RSS_MB else 'NOT met'})")
    print("\nStatisticsGen against the floor, pandas read_csv().describe(include='all') on the same CSV:")
    for rows in sizes:
        floor = floors[rows]
        line = f"{rows:>10,} trips: pandas {floor['seconds']:.1f} s ({floor['peak_rss_mb']:.0f} MB)"
        for mode in modes:
            if (rows, mode) in results:
                stats = _seconds(results[rows, mode])["StatisticsGen"][0]
                line += f"; StatisticsGen {mode} {stats:.1f} s = {stats / floor['seconds']:.1f}x"
        print(line)
    before, after = ("/".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"\nmachine: {os.cpu_count()} cores; load (1/5/15 min) before {before}, after {after}")


if __name__ == "__main__":
    main()
