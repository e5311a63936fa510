"""`conveyor ct demo`: the closed loop, played for real in a scratch home (conveyor/cli/ct.py makes it).

  1. upstream span 1 arrives: a tick trains and pushes the first model (new_data);
  2. `conveyor serve` starts as its own process on a free loopback port;
  3. a client sends trips over HTTP, and their outcomes arrive later as labels (labels/*.jsonl, the
     documented format); a tick finds the served version healthy;
  4. the world shifts: trips get 1.5 times longer (trip_miles) and credit-card riders stop tipping;
     a tick before the labels flags the skew and waits for labels to learn from;
  5. the labels arrive: a tick fires performance (and drift), turns the labelled traffic into a
     feedback span, trains on it and pushes it as a canary (ct_rollout canary:30): the running
     server answers 30 % of requests with it;
  6. a second tick on the same evidence does nothing; the rollout waits for labels;
  7. more shifted trips, their labels in: the rollout guard finds the canary better than the first
     model on the same traffic and a tick promotes it; the server answers every request with it;
  8. the first model, worse in the shifted world, is pushed again under shadow: it answers a copy
     of every request and no client ever gets its answer; labels in, a tick aborts it.
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
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from conveyor.local import runner as local_run
from ct import controller, decisions
from data import generator
from models import features
from models.instances import from_row
from monitoring import labels as labels_lib
from pipeline import configs, versions

Row = dict[str, str]
BATCH = 50
CANARY_REQUEST = 5  # trips per request while a canary runs: the split is by request, so many small ones


def shifted_trips(reference: list[Row], count: int, seed: int) -> list[Row]:
    """Trips of the shifted world: far fewer big tippers (label_shift) and trip_miles x1.5."""
    rows = generator.generate(reference, count, seed, "label_shift")
    generator.PROBLEMS["miles_scale"](rows, random.Random(seed))
    return rows


def send_trips(url: str, model: str, rows: list[Row], prefix: str, size: int = BATCH) -> list[tuple[str, int, Row, str]]:
    """POST `rows` to the server in requests of `size`; returns (request_id, index, row, answering version)."""
    sent = []
    for start in range(0, len(rows), size):
        batch = rows[start : start + size]
        request_id = f"{prefix}-{start // size}"
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

    def wait_for_labels(self, model: str, rollout: dict[str, str], timeout: float = 60.0) -> None:
        """Until the server's labels besides `stable` are `rollout` (every worker loads the candidate within poll_seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/v1/models/{model}", timeout=30) as response:
                labels = json.loads(response.read()).get("labels", {})
            if {k: v for k, v in labels.items() if k != "stable"} == rollout:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the server's labels did not become {rollout} within {timeout:g} s")

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
        retrained = tick("labels in: retrain on served traffic, push as a canary")
        if not retrained.pushed_version:
            return
        server.wait_for_labels(config.model_name, {"canary": retrained.pushed_version})
        answered = Counter(v for *_, v in send_trips(server.url, config.model_name, shifted_trips(reference, 200, seed + 5), "split", 1))
        say(f"[the running server answers 200 one-trip requests: {answered[retrained.pushed_version]} by the canary "
            f"{retrained.pushed_version}, {answered[first.pushed_version]} by stable {first.pushed_version}]")
        tick("same evidence, next tick")

        sent = send_trips(server.url, config.model_name, shifted_trips(reference, 1000, seed + 4), "after", CANARY_REQUEST)
        deliver_labels(config, "after", sent)
        say(f"\n[{len(sent)} more shifted trips in requests of {CANARY_REQUEST}, labels in]")
        tick("the rollout guard judges the canary")
        server.wait_for_labels(config.model_name, {})
        say(f"[the running server answers with X-Model-Version {server.served_version(config.model_name, reference[0])}]")

        worse = versions.republish(config.serving_root, first.pushed_version, versions.new_version(config.serving_root), "shadow").name
        say(f"\n[version {first.pushed_version}, trained before the shift, is pushed again as {worse} under shadow]")
        server.wait_for_labels(config.model_name, {"shadow": worse})
        sent = send_trips(server.url, config.model_name, shifted_trips(reference, 400, seed + 6), "shadowed")
        who = sorted({v for *_, v in sent})
        say(f"[{len(sent)} shifted trips: answered by {', '.join(who)}; {worse} answered a copy of each, never returned]")
        deliver_labels(config, "shadowed", sent)
        tick("labels in: the rollout guard judges the shadow")
