"""`conveyor ct demo`: the closed loop, played for real in a scratch home (conveyor/cli/ct.py makes it).

  1. upstream span 1 arrives: a tick trains and pushes the first model (new_data);
  2. `conveyor serve` starts as its own process on a free loopback port;
  3. a client sends trips over HTTP, and their outcomes arrive later as labels (labels/*.jsonl, the
     documented format); a tick finds the served version healthy;
  4. the world shifts: trips get 1.5 times longer (trip_miles) and credit-card riders stop tipping;
     a tick before the labels flags the skew and waits for labels to learn from;
  5. the labels arrive: a tick fires performance (and drift), turns the labelled traffic into a
     feedback span, trains on it, pushes; the running server swaps to the new version;
  6. a second tick on the same evidence does nothing;
  7. the new version serves shifted traffic, labels arrive, and the post-push guard compares it with
     the version it replaced on the same requests.
Every decision is printed with its reasons. The client and the label feed stand in for the world:
nothing else sits between the server, the labels and the controller.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterable

from conveyor.local import runner as local_run
from ct import controller, decisions
from data import generator
from models import features
from models.instances import from_row
from monitoring import labels as labels_lib
from pipeline import configs

Row = dict[str, str]
BATCH = 50


def shifted_trips(reference: list[Row], count: int, seed: int) -> list[Row]:
    """Trips of the shifted world: far fewer big tippers (label_shift) and trip_miles x1.5."""
    rows = generator.generate(reference, count, seed, "label_shift")
    generator.PROBLEMS["miles_scale"](rows, random.Random(seed))
    return rows


def send_trips(url: str, model: str, rows: list[Row], prefix: str) -> list[tuple[str, int, Row, str]]:
    """POST `rows` to the server in batches; returns (request_id, index, row, answering version)."""
    sent = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        request_id = f"{prefix}-{start // BATCH}"
        body = json.dumps({"instances": [from_row(r) for r in batch]}).encode()
        request = urllib.request.Request(
            f"{url}/v1/models/{model}:predict", data=body,
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            version = response.headers["X-Model-Version"]
            json.loads(response.read())
        sent += [(request_id, i, row, version) for i, row in enumerate(batch)]
    return sent


def deliver_labels(config: configs.PipelineConfig, name: str, sent: Iterable[tuple[str, int, Row, str]]) -> Path:
    """What a label feed does once the outcomes are known: one `{request_id, index, <label columns>}`
    per line (the taxi's: tips), the values from the sent rows."""
    path = config.labels_root / f"{name}.jsonl"
    contract = features.active()
    kinds = {name: contract.column(name).type for name in contract.label.label_only}
    typed = {"float": float, "int": lambda text: int(float(text)), "string": str}
    labels_lib.write(path, [(request_id, index, {c: typed[kind](row[c]) for c, kind in kinds.items()})
                            for request_id, index, row, _ in sent])
    return path


class ServerProcess:
    """`conveyor serve` as its own process on a free loopback port (the installed entry point)."""

    def __init__(self, home: Path, command: list[str] | None = None):
        self.command = (command or [sys.executable, "-m", "conveyor.cli"]) + ["serve", "--home", str(home), "--port", "0"]
        self.process: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> "ServerProcess":
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if "http://" not in line:
            self.__exit__()
            raise RuntimeError(f"conveyor serve did not start: {line!r}")
        self.url = "http://" + line.split("http://", 1)[1].split("/v1/", 1)[0].strip()
        return self

    def served_version(self, model: str, row: Row) -> str:
        # Each probe its own request id: the server answers an id it has answered before with 409.
        return send_trips(self.url, model, [row], f"probe-{uuid.uuid4().hex[:12]}")[0][3]

    def wait_for_version(self, model: str, row: Row, version: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            served = self.served_version(model, row)
            if served == version or time.monotonic() > deadline:
                return served
            time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def play(config: configs.PipelineConfig, say: Callable[[str], None] = print, seed: int = 0) -> None:
    """The scenario above. Evidence is counted per version since it went live, so the shifted phase
    outweighs the clean one (1400 trips to 200), and outnumbers the upstream span (800 trips): the
    retrained model must learn the new world from the served traffic."""
    reference = generator.shipped_reference()

    def tick(title: str) -> decisions.Decision:
        decision = controller.tick(config, local_run.launch)
        say(f"\n[{title}]\n{decisions.format_decision(decision)}")
        return decision

    generator.write_generated_span(config.spans_root, 1, reference, 800, seed + 1)
    first = tick("upstream span 1 arrives")
    if not first.pushed_version:
        raise RuntimeError("the first run pushed nothing: see the decision above")
    with ServerProcess(config.home) as server:
        say(f"\n[conveyor serve is up at {server.url}, serving version {server.served_version(config.model_name, reference[0])}]")
        clean = generator.generate(reference, 200, seed + 2)
        sent = send_trips(server.url, config.model_name, clean, "clean")
        say(f"[client: {len(sent)} trips over HTTP; the label feed delivers their outcomes]")
        deliver_labels(config, "clean", sent)
        tick("clean traffic, labels in")

        shifted = shifted_trips(reference, 1400, seed + 3)
        sent = send_trips(server.url, config.model_name, shifted, "shifted")
        say(f"\n[the world shifts: {len(sent)} trips, 1.5 times longer, credit-card riders stop tipping; no labels yet]")
        tick("shifted traffic, labels not in yet")
        deliver_labels(config, "shifted", sent)
        say("[the labels of the shifted trips arrive]")
        retrained = tick("labels in: retrain on served traffic")
        if retrained.pushed_version:
            served = server.wait_for_version(config.model_name, reference[0], retrained.pushed_version)
            say(f"[the running server now answers with X-Model-Version {served}]")
        tick("same evidence, next tick")

        sent = send_trips(server.url, config.model_name, shifted_trips(reference, 600, seed + 4), "after")
        deliver_labels(config, "after", sent)
        say(f"\n[{len(sent)} more shifted trips served by version {sent[0][3]}, labels in]")
        tick("post-push guard")

