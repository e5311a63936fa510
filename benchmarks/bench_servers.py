"""The servers `make bench-serving` measures, and the load clients that measure them (each its own process).

`conveyor serve` processes, the server of another git revision, and the same application on a
maintained ASGI server (benchmarks/asgi_server.py); load from benchmarks/load_client.py (HTTP) and
benchmarks/grpc_load_client.py (gRPC).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Served:
    """A running server under test: its process, URL and home."""

    label: str
    home: Path
    process: subprocess.Popen
    url: str = ""
    grpc: str = ""  # host:port of its gRPC API, if it serves one
    results: dict[str, list[dict]] = field(default_factory=dict)
    answered_instances: int = 0  # instances answered 200, which the request log must hold
    logs: bool = True  # False: run with --no-request-log (the HTTP path without the fsync)

    def count(self, result: dict, instances_per_request: int = 1) -> dict:
        ok = result["statuses"].get("200", 0) + result.get("warmup_statuses", {}).get("200", 0)
        self.answered_instances += ok * instances_per_request
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(label: str, home: Path, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Served:
    logs = "--no-request-log" not in argv
    errors = home / "serve.err"
    home.mkdir(parents=True, exist_ok=True)
    with open(errors, "w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd)
    served = Served(label, home, process, logs=logs)
    line = process.stdout.readline()
    if " at http://" not in line:
        served.stop()
        raise SystemExit(f"bench-serving: {label} did not start: {line!r}\n{errors.read_text()[-2000:]}")
    served.url = line.split(" at ")[1].split("/v1/")[0]
    grpc = re.search(r"gRPC at (\S+)", line)
    served.grpc = grpc.group(1) if grpc else ""
    threading.Thread(target=process.stdout.read, daemon=True).start()  # drain
    return served


def home_with(model: Path, home: Path) -> Path:
    shutil.copytree(model, home / "serving_model" / model.name)
    return home


def load(url: str, bodies: Path, concurrency: int, requests: int | None = None, seconds: float | None = None,
          warmup: int = 0, path: str = "/v1/models/taxi:predict") -> dict:
    argv = [sys.executable, "-m", "benchmarks.load_client", "--url", url, "--bodies", str(bodies),
            "--concurrency", str(concurrency), "--warmup", str(warmup), "--path", path]
    argv += ["--requests", str(requests)] if requests else ["--seconds", str(seconds)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)




def grpc_load(target: str, requests_file: Path, concurrency: int, requests: int, warmup: int = 0) -> dict:
    argv = [sys.executable, "-m", "benchmarks.grpc_load_client", "--target", target, "--requests-file", str(requests_file),
            "--concurrency", str(concurrency), "--requests", str(requests), "--warmup", str(warmup)]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def start_asgi(on: str, model: Path, home: Path, packages: Path, env: dict[str, str]) -> Served:
    """The application on `on` (uvicorn or granian), with its request log, in a home of its own."""
    with socket.socket() as probe:  # a free port: neither server prints the one it picked
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(packages)]))
    return start(f"same app on {on}, 1 process", home_with(model, home),
                 [sys.executable, "-m", "benchmarks.asgi_server", "--on", on, "--port", str(port)],
                 {**env, "PYTHONPATH": path, "CONVEYOR_HOME": str(home)})
