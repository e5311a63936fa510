"""`make bench-serving`: the model server against the in-process SavedModel call, and hot swaps.

    python -m benchmarks.serving_bench [--home DIR] [--requests N]

Works in a scratch home (outputs/bench-serving, wiped first) holding a copy of the version serving
under --home (default outputs/, i.e. what `make run` pushed); with nothing pushed there it first
runs a small pipeline (800 rows, 100 steps) in the scratch home. Then, on the same single-instance
inputs from span 1:
  - the in-process floor: the SavedModel's serving_default called directly, at concurrency 1 and 8;
  - the server over loopback HTTP (JSON instances), at concurrency 1 and 8: p50/p99 latency, req/s;
  - three hot swaps while 8 clients keep sending: errors (should be 0) and versions served.
Request loops are bounded by count; the server binds 127.0.0.1 on a free port.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from data import materialize, spans_io
from conveyor import local_run
from pipeline import configs
from serving import server
from pipeline import versions
from models.instances import from_row, to_example

CONCURRENCY = (1, 8)
SWAPS = 3


def _span_1_rows() -> list[dict[str, str]]:
    materialize.materialize()  # idempotent: the default spans from the installed tfx wheel
    return spans_io.read_rows(spans_io.span_dir(materialize.DEFAULT_SPANS_ROOT, 1) / spans_io.SPAN_FILE)


def _scratch_home(source: configs.PipelineConfig, scratch: Path) -> configs.PipelineConfig:
    if source.home.resolve() == scratch.resolve():
        raise SystemExit(f"bench-serving: --home must not be the scratch home {scratch}, which is wiped")
    shutil.rmtree(scratch, ignore_errors=True)
    config = source.replace(home=scratch, poll_seconds=0.5)
    version = versions.serving_version(source.serving_root)
    if version is not None:
        shutil.copytree(source.serving_root / version, config.serving_root / version)
        return config
    print(f"bench-serving: nothing pushed under {source.serving_root}; training a small model first", flush=True)
    rows = _span_1_rows()
    config = config.replace(spans_root=scratch / "spans", train_steps=100, eval_steps=5, span=1)
    spans_io.write_span(config.spans_root, 1, rows[:800])
    summary = local_run.run(config)
    if not summary.pushed_path:
        raise SystemExit(f"bench-serving: the small run pushed nothing: {summary.error or 'not blessed'}")
    return config


def _measure(call: Callable[[int], None], total: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (s) of `total` calls spread over `concurrency` threads, and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        started = time.perf_counter()
        call(i)
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    return latencies, time.perf_counter() - started


def _row(label: str, concurrency: int, latencies: list[float], wall: float) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000
    return f"{label:<22}{concurrency:>12}{len(ordered):>10}{p50:>10.2f}{p99:>10.2f}{len(ordered) / wall:>10.1f}"


def main() -> None:
    import httpx
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="home whose serving version is benchmarked (default outputs/)")
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement")
    args = parser.parse_args()

    source = configs.load(home=args.home)
    config = _scratch_home(source, configs.REPO_ROOT / "outputs" / "bench-serving")
    rows = _span_1_rows()[:200]
    instances = [from_row(r) for r in rows]
    examples = [tf.constant([to_example(i)]) for i in instances]

    built = server.build(config, port=0)
    version = built.host.current().version
    signature = built.host.current().saved_model.signatures["serving_default"]
    lines = [f"{'path':<22}{'concurrency':>12}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"]
    with server.BackgroundServer(built) as url:
        clients = threading.local()

        def http_call(i: int) -> None:
            if not hasattr(clients, "client"):
                clients.client = httpx.Client(base_url=url, timeout=30)
            response = clients.client.post(f"/v1/models/{config.model_name}:predict", json={"instances": [instances[i % len(instances)]]})
            response.raise_for_status()

        def floor_call(i: int) -> None:
            signature(examples=examples[i % len(examples)])

        for i in range(20):  # warm-up: tracing, connections
            floor_call(i)
            http_call(i)
        for concurrency in CONCURRENCY:
            lines.append(_row("in-process SavedModel", concurrency, *_measure(floor_call, args.requests, concurrency)))
            lines.append(_row("HTTP (JSON instances)", concurrency, *_measure(http_call, args.requests, concurrency)))

        swap_lines = _hot_swaps(config, url, version, instances, built)
    print(f"\nmodel version {version}, {len(instances)} distinct single-instance requests, loopback HTTP")
    print("\n".join(lines))
    print("\n".join(swap_lines))


def _hot_swaps(config, url, version: str, instances, built) -> list[str]:
    """8 clients send requests (bounded) while SWAPS new versions are pushed one after another."""
    import httpx

    results: list[tuple[int, str | None]] = []
    errors: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(20_000):
                if stop.is_set():
                    return
                try:
                    r = client.post(f"/v1/models/{config.model_name}:predict", json={"instances": [instances[i % len(instances)]]})
                    results.append((r.status_code, r.headers.get(server.VERSION_HEADER)))
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

    swaps_before = built.host.swaps
    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    pushed = []
    try:
        for step in range(1, SWAPS + 1):
            time.sleep(1.0)
            new = str(int(version) + step)
            versions.republish(config.serving_root, version, new)
            pushed.append(new)
            deadline = time.monotonic() + 60
            while built.host.swaps < swaps_before + step and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    wall = time.perf_counter() - started
    failed = [s for s, _ in results if s != 200]
    served = sorted({v for _, v in results if v}, key=int)
    return [
        f"\nhot swaps under load: {built.host.swaps - swaps_before} of {SWAPS} swaps done in {wall:.1f} s "
        f"with 8 clients; {len(results)} responses, {len(failed) + len(errors)} errors; versions served: {', '.join(served)}",
    ] + [f"  error: {e}" for e in errors[:5]]


if __name__ == "__main__":
    main()
