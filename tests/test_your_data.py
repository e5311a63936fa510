"""From a CSV file to a served, monitored, self-retraining model, through the installed command only
(docs/your-data.md): `conveyor init` on the churn data (tests/churn_data.py), then inside the
project `conveyor run`, `conveyor serve` (a real process, answering HTTP), outcomes delivered to the
project's labels folder, `conveyor monitor` and `conveyor ct tick`, which retrains on that evidence.
Nothing outside the project (and the test's temp folder) is written."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from pipeline.configs import REPO_ROOT
from tests import churn_data
from tests.serving_helpers import CONVEYOR

BATCH = 50
UNTOUCHED = ("outputs", "schema", "data/spans", "models/taxi.toml")  # the checkout's own home, schema, spans and contract


def _snapshot() -> dict[str, tuple[int, int]]:
    found = {}
    for name in UNTOUCHED:
        root = REPO_ROOT / name
        for path in [root, *root.rglob("*")] if root.exists() else []:
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size if path.is_file() else 0)
    return found


def _conveyor(*args: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _shifted(rows: list[dict]) -> list[dict]:
    """The world moved on: every customer on the pro or plus plan now churns."""
    return [{**r, churn_data.LABEL: "yes" if r["plan"] in ("pro", "plus") else r[churn_data.LABEL]} for r in rows]


def test_a_csv_becomes_a_served_monitored_self_retraining_model(tmp_path):
    before = _snapshot()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["TMPDIR"] = str(scratch)  # what the commands leave in the temp folder is checked at the end
    data = churn_data.write(tmp_path / "customers.csv")
    project = tmp_path / "shop"

    done = _conveyor("init", str(project), "--from-csv", str(data), "--label", churn_data.LABEL, "--name", "churn", cwd=tmp_path, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "conveyor run" in done.stdout and "/v1/models/churn:predict" in done.stdout

    done = _conveyor("run", cwd=project, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running conveyor-churn on span 1" in done.stdout and "running conveyor-churn on span 2" in done.stdout
    pushed = sorted(p.name for p in (project / "outputs/serving_model").iterdir() if p.name.isdigit())
    assert len(pushed) == 2, done.stdout

    served = _shifted(churn_data.rows(600, seed=11))
    server = subprocess.Popen([str(CONVEYOR), "serve", "--port", "0"], cwd=project, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/v1/models/churn", line)
        assert url, line + server.stderr.read()
        answers = []
        with httpx.Client(base_url=url.group(1), timeout=60) as client:
            for start in range(0, len(served), BATCH):
                instances = [{k: v for k, v in r.items() if k != churn_data.LABEL and v != ""} for r in served[start : start + BATCH]]
                reply = client.post("/v1/models/churn:predict", json={"instances": instances}, headers={"X-Request-Id": f"req-{start // BATCH}"})
                assert reply.status_code == 200, reply.text
                assert reply.headers["X-Model-Version"] == pushed[-1]
                answers += reply.json()["predictions"]
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert server.returncode == 0

    labels = project / "outputs/labels"
    labels.mkdir()
    (labels / "outcomes.jsonl").write_text("".join(
        json.dumps({"request_id": f"req-{i // BATCH}", "index": i % BATCH, churn_data.LABEL: r[churn_data.LABEL]}) + "\n"
        for i, r in enumerate(served)))
    right = sum((a["probability"] > 0.5) == (r[churn_data.LABEL] == "yes") for a, r in zip(answers, served)) / len(served)
    assert right < 0.75  # the shift makes the served model wrong often: the live floor is 0.75

    done = _conveyor("monitor", cwd=project, env=env)
    assert done.returncode == 3, done.stdout + done.stderr  # an alert
    result = json.loads(next((project / "outputs/monitoring").glob("*/result.json")).read_text())
    live = result["live_metrics"][pushed[-1]]
    assert (live["labeled"], live["state"], live["accuracy"]) == (600, "low", pytest.approx(right))

    done = _conveyor("ct", "tick", cwd=project, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    decision = json.loads((project / "outputs/ct/decisions.jsonl").read_text().splitlines()[-1])
    assert decision["fired"] and decision["triggers"][0] == "performance", decision["reason"]
    assert decision["signals"]["performance"]["accuracy"] == pytest.approx(right)
    assert (decision["span_source"], decision["outcome"], decision["feedback"]["labelled"]) == ("feedback", "ok", 600)
    feedback = project / f"outputs/feedback/spans/feedback-{decision['span']}/data.csv"
    with open(feedback, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == churn_data.COLUMNS  # the project's columns, with the label delivered
    assert sorted((r["customer_id"], r[churn_data.LABEL]) for r in rows) == sorted(
        (str(r["customer_id"]), r[churn_data.LABEL]) for r in served)

    done = _conveyor("ct", "status", cwd=project, env=env)
    assert done.returncode == 0 and "performance" in done.stdout, done.stdout + done.stderr
    for command, shown in ((["models"], pushed[0]), (["lineage"], str(project / "spans")), (["card"], "model card of churn"),
                           (["runs"], "ct: ")):
        done = _conveyor(*command, cwd=project, env=env)
        assert done.returncode == 0 and shown in done.stdout, done.stdout + done.stderr
    assert _snapshot() == before  # the checkout's outputs/, schema/, spans and contract untouched
    assert list(scratch.iterdir()) == []  # nor anything left in the temp folder


def test_the_demo_refuses_a_project(tmp_path):
    (tmp_path / "conveyor.toml").write_text('[project]\nname = "churn"\n')
    done = subprocess.run([str(CONVEYOR), "ct", "demo"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert re.fullmatch(rf"conveyor ct demo: {tmp_path} is a project: the demo plays the taxi's loop only .*\n", done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conveyor.toml"]
