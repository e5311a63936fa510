"""`make bench`: Conveyor against the official TFX taxi template, side by side, then the cost of a new span.

    python -m benchmarks.pipeline_bench [--repeats N] [--spans N] [--span-rows N] [--window-spans K]
                                        [--workdir DIR]

Every figure comes from a process started the way a person starts it (`conveyor run`, the template's
`python local_runner.py`), measured by benchmarks/timed_run.py, in one sitting on this machine:

  1. One run each, alternately, --repeats times (median reported): the official taxi template
     (benchmarks/template.py: `tfx template copy` from the installed wheel, every component enabled,
     its 15,002 trips, 1000 steps) and Conveyor on the same trips with every component running (less
     the trips lacking a feature the curated schema requires, which DataGate would rightly block).
  2. `make run` cold: `conveyor run` in a fresh home on the two default spans (span 1, then span 2).
  3. A no-change re-run of that home: pipeline time, and process start (the interpreter, loading TFX, TensorFlow and Beam).
  4. Spans 1..N written by data/generator.py (--span-rows trips each, seeds 1..N), one run each in
     one home, trained on the newest --window-spans spans: seconds per component per span.

Wall seconds depend on what else the machine runs; CPU seconds (user + system of the process) much
less, so both are printed, with `uptime`'s load before and after.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from benchmarks import template
from data import generator, materialize, spans_io
from pipeline import configs

GOAL_SINGLE_RUN = 0.75  # Conveyor's single run / the template's, wall time
GOAL_COLD_MAKE_RUN = 1.5  # `make run` cold (two spans) / the template's single run
GOAL_NO_CHANGE_SECONDS = 3.0  # pipeline time of a no-change re-run
GOAL_ACCURACY = 0.89
# Per-span table columns: (heading, node ids summed).
SPAN_COLUMNS = (
    ("ExampleGen", ("CsvExampleGen",)),
    ("Statistics", ("StatisticsGen",)),
    ("Validate", ("ExampleValidator", "DataGate")),
    ("Transform", ("Transform",)),
    ("Trainer", ("Trainer",)),
    ("Evaluator", ("Evaluator",)),
    ("InfraCheck", ("InfraCheck",)),
)


def timed(out: Path, kind: str, args: list[str], cwd: Path | None = None) -> dict:
    """Run one measured process (benchmarks/timed_run.py); its record plus `wall`, seconds to exit."""
    env = {**os.environ, "PYTHONPATH": str(configs.REPO_ROOT)}
    command = [sys.executable, "-m", "benchmarks.timed_run", str(out), kind, *args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd or configs.REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: {kind} {' '.join(args)} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    record = json.loads(out.read_text())
    record["wall"] = wall
    return record


def template_span(template_dir: Path, spans_root: Path, schema_path: Path) -> tuple[int, int]:
    """The template's trips as Conveyor span 1, less those missing a feature the schema requires
    in every example; returns (trips kept, trips dropped)."""
    schema = text_format.Parse(schema_path.read_text(), schema_pb2.Schema())
    required = [f.name for f in schema.feature if f.HasField("presence") and f.presence.min_fraction == 1.0]
    rows = spans_io.read_rows(template_dir / template.DATA)
    kept = [r for r in rows if all(r.get(name, "") != "" for name in required)]
    spans_io.write_span(spans_root, 1, kept)
    return len(kept), len(rows) - len(kept)


def run_template(template_dir: Path, out: Path) -> dict:
    for state in ("tfx_pipeline_output", "tfx_metadata"):  # a cold run each time
        shutil.rmtree(template_dir / state, ignore_errors=True)
    record = timed(out, "script", ["local_runner.py"], cwd=template_dir)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's deprecation notices
    from pipeline import evaluation  # TFMA: imported once, after the first measured process

    overall = evaluation.load_evaluation(str(template.evaluation_uri(template_dir))).metrics[evaluation.OVERALL]
    record["binary_accuracy"] = overall["binary_accuracy"]
    return record


def run_conveyor(out: Path, home: Path, spans_root: Path, *extra: str) -> dict:
    record = timed(out, "conveyor", ["run", "--home", str(home), "--spans-root", str(spans_root), *extra])
    failed = [r for r in record["runs"] if not r["ok"]]
    if failed:
        raise SystemExit(f"bench: conveyor run in {home} failed: {failed[0]['error']}")
    return record


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _component_medians(records: list[dict], index: int) -> dict[str, float]:
    names = [c[0] for c in records[0]["components"]]
    return {name: _median([{c[0]: c[index] for c in r["components"]}[name] for r in records]) for name in names}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def _verdict(value: float, goal: float, lower_is_better: bool = True) -> str:
    met = value <= goal if lower_is_better else value >= goal
    return f"goal {'<=' if lower_is_better else '>='} {goal:g}: {'met' if met else 'NOT met'}"


def print_comparison(templates: list[dict], conveyors: list[dict], kept: int, dropped: int) -> float:
    """The side-by-side table; returns the template's median wall seconds."""
    t_wall, c_wall = _median([r["wall"] for r in templates]), _median([r["wall"] for r in conveyors])
    t_cpu, c_cpu = _median([r["cpu"] for r in templates]), _median([r["cpu"] for r in conveyors])
    t_acc = _median([r["binary_accuracy"] for r in templates])
    c_acc = _median([r["runs"][0]["binary_accuracy"] for r in conveyors])
    print(f"\n1. One run on the template's data (median of {len(templates)} alternating runs each)")
    print(f"   template: its 15,002 trips; Conveyor: {kept:,} of them ({dropped} lack a feature its schema requires)\n")
    print(f"   {'':<34}{'template':>12}{'Conveyor':>12}{'ratio':>8}")
    print(f"   {'whole process, wall s':<34}{t_wall:>12.1f}{c_wall:>12.1f}{_ratio(c_wall, t_wall):>8}   {_verdict(c_wall / t_wall, GOAL_SINGLE_RUN)}")
    print(f"   {'whole process, CPU s':<34}{t_cpu:>12.1f}{c_cpu:>12.1f}{_ratio(c_cpu, t_cpu):>8}")
    each = [" ".join(f"{r['wall']:.0f}" for r in records) for records in (templates, conveyors)]
    print(f"   {'each run, wall s':<34}{each[0]:>12}{each[1]:>12}")
    print(f"   {'eval binary accuracy':<34}{t_acc:>12.3f}{c_acc:>12.3f}{'':>8}   Conveyor {_verdict(c_acc, GOAL_ACCURACY, False)}")
    print(f"   {'components':<34}{len(templates[0]['components']):>12}{len(conveyors[0]['components']):>12}")
    t_first, c_first = _median([r["first_component"] for r in templates]), _median([r["first_component"] for r in conveyors])
    print(f"   {'process start to first component':<34}{t_first:>12.1f}{c_first:>12.1f}")
    print("\n   seconds per component (median; wall / CPU):")
    t_wall_c, t_cpu_c = _component_medians(templates, 2), _component_medians(templates, 3)
    c_wall_c, c_cpu_c = _component_medians(conveyors, 2), _component_medians(conveyors, 3)
    twins = {"CsvExampleGen": "CsvExampleGen", "StatisticsGen": "StatisticsGen", "SchemaGen": "ImportSchemaGen",
             "Transform": "Transform", "Trainer": "Trainer", "Evaluator": "Evaluator", "Pusher": "Pusher",
             "latest_blessed_model_resolver": "baseline_model"}
    rows = [(t, twins.get(t)) for t in t_wall_c] + [(None, c) for c in c_wall_c if c not in twins.values()]
    print(f"   {'template':<32}{'wall':>7}{'CPU':>7}   {'Conveyor':<22}{'wall':>7}{'CPU':>7}")
    for t, c in rows:
        left = f"{t:<32}{t_wall_c[t]:>7.1f}{t_cpu_c[t]:>7.1f}" if t else f"{'-':<32}{'':>14}"
        right = f"{c:<22}{c_wall_c[c]:>7.1f}{c_cpu_c[c]:>7.1f}" if c else "-"
        print(f"   {left}   {right}")
    return t_wall


def print_make_run(cold: dict, unchanged: dict, template_wall: float) -> None:
    spans = [r["span"] for r in cold["runs"]]
    print(f"\n2. `make run` cold on a fresh home (spans {', '.join(map(str, spans))}, one run each)\n")
    ratio = cold["wall"] / template_wall
    print(f"   whole process {cold['wall']:.1f} s wall, {cold['cpu']:.1f} s CPU = {ratio:.2f} x the template's single run"
          f"   {_verdict(ratio, GOAL_COLD_MAKE_RUN)}")
    print("   per run: " + ", ".join(f"span {r['span']} {r['seconds']:.1f} s" for r in cold["runs"]))
    print(f"   final eval binary accuracy (window {cold['runs'][-1]['window']}): {cold['runs'][-1]['binary_accuracy']:.3f}")
    [run] = unchanged["runs"]
    statuses = sorted({c[1] for c in unchanged["components"]})
    start = unchanged["wall"] - run["seconds"]
    print(f"\n3. No-change re-run of that home (span {run['span']})\n")
    print(f"   pipeline time {run['seconds']:.2f} s (component statuses: {', '.join(statuses)})   {_verdict(run['seconds'], GOAL_NO_CHANGE_SECONDS)}")
    print(f"   process start {start:.1f} s (interpreter, TFX, TensorFlow and Beam); whole process {unchanged['wall']:.1f} s, {unchanged['cpu']:.1f} s CPU")


def print_spans(record: dict, rows: int, window: int) -> None:
    print(f"\n4. Spans 1..{len(record['runs'])} of {rows:,} generated trips each, one run per span, window {window} spans")
    print("   seconds per component, wall (CPU); Transform analyses the new span, its cache holds the rest of the window\n")
    heading = "".join(f"{name:>14}" for name, _ in SPAN_COLUMNS)
    print(f"   {'span':>4}{'window':>10}{heading}{'run':>8}")
    components = iter(record["components"])
    for run in record["runs"]:
        mine = {}
        for _ in range(run["components"]):
            name, _, wall, cpu = next(components)
            mine[name] = (wall, cpu)
        cells = []
        for _, nodes in SPAN_COLUMNS:
            wall = sum(mine.get(n, (0, 0))[0] for n in nodes)
            cpu = sum(mine.get(n, (0, 0))[1] for n in nodes)
            cells.append(f"{wall:>7.1f} ({cpu:>4.1f})")
        window_text = ",".join(map(str, run["window"]))
        print(f"   {run['span']:>4}{window_text:>10}{''.join(f'{c:>14}' for c in cells)}{run['seconds']:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=configs.REPO_ROOT / "outputs" / "bench")
    parser.add_argument("--repeats", type=int, default=3, help="alternating template / Conveyor runs each")
    parser.add_argument("--spans", type=int, default=6, help="generated spans for the per-span table")
    parser.add_argument("--span-rows", type=int, default=5000)
    parser.add_argument("--window-spans", type=int, default=3, help="training window of the per-span table")
    args = parser.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_before = os.getloadavg()
    print(f"bench: {os.cpu_count()} cores, load {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; writing to {work}", flush=True)
    template_dir = template.create(work)
    kept, dropped = template_span(template_dir, work / "template-spans", configs.PipelineConfig().schema_path)

    templates, conveyors = [], []
    for i in range(args.repeats):
        print(f"bench: template run {i + 1}/{args.repeats}", flush=True)
        templates.append(run_template(template_dir, work / f"template-{i}.json"))
        print(f"bench: Conveyor run {i + 1}/{args.repeats} on the template's data", flush=True)
        home = work / f"single-{i}"
        conveyors.append(run_conveyor(work / f"single-{i}.json", home, work / "template-spans"))
        shutil.rmtree(home)

    default_spans = work / "default-spans"
    materialize.materialize(default_spans)
    print("bench: `make run` cold (spans 1 and 2), then a no-change re-run", flush=True)
    cold = run_conveyor(work / "cold.json", work / "default-home", default_spans)
    unchanged = run_conveyor(work / "unchanged.json", work / "default-home", default_spans)

    print(f"bench: writing {args.spans} generated spans of {args.span_rows:,} trips", flush=True)
    generated = work / "generated-spans"
    reference = generator.shipped_reference()
    for span in range(1, args.spans + 1):
        generator.write_generated_span(generated, span, reference, args.span_rows, seed=span)
    print(f"bench: spans 1..{args.spans}, one run each", flush=True)
    spans = run_conveyor(work / "spans.json", work / "spans-home", generated, "--window-spans", str(args.window_spans))

    load_after = os.getloadavg()
    print_comparison(templates, conveyors, kept, dropped)
    print_make_run(cold, unchanged, _median([r["wall"] for r in templates]))
    print_spans(spans, args.span_rows, args.window_spans)
    before, after = ("/".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"\nmachine: {os.cpu_count()} cores, {_cpu_model()}; load (1/5/15 min) before {before}, after {after}")
    print(f"defaults: train_steps={configs.PipelineConfig().train_steps}, beam in_memory; records in {work}/*.json")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU model unknown"


if __name__ == "__main__":
    main()
