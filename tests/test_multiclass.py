"""A multi-class pipeline end to end through the installed command, on a dataset unlike the taxi's
(tests/wine.py: 3 cultivars, a string column with empty cells): `conveyor run` pushes a softmax
model whose evaluation beats chance on every class, `conveyor serve` answers REST predict and
classify and gRPC Classify with every class, delivered labels give `conveyor monitor` its live
accuracy (a value outside the classes is skipped and counted), and `conveyor ct tick` decides."""
from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import classification_pb2, model_pb2, prediction_service_pb2_grpc

from models import features
from models.examples import to_example
from pipeline import versions
from tests import wine
from tests.serving_helpers import CONVEYOR, Serve

TIMEOUT = 30


@pytest.fixture(scope="module")
def wine_home(tmp_path_factory):
    """The wine spans, contract and derived schema, and the environment every command gets."""
    from schema import derive

    base = tmp_path_factory.mktemp("wine")
    contract_path = base / "wine.toml"
    contract_path.write_text(wine.CONTRACT)
    data = wine.rows()
    assert 1900 < len(data) < 2100 and sum(r["cellar"] == "" for r in data) > 100
    wine.write_spans(base / "spans", data, spans=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(features.PATH_VARIABLE, str(contract_path))
        completeness = derive.derive_completeness(base / "spans")
        schema = derive.derive(base / "spans", completeness)
    from tfx.utils import io_utils

    io_utils.write_pbtxt_file(str(base / "schema.pbtxt"), schema)
    (base / "completeness.json").write_text(json.dumps(completeness))
    env = {**os.environ, features.PATH_VARIABLE: str(contract_path), "CONVEYOR_SCHEMA_PATH": str(base / "schema.pbtxt"),
           "CONVEYOR_COMPLETENESS_PATH": str(base / "completeness.json"), "CONVEYOR_TRAIN_STEPS": "400", "CONVEYOR_EVAL_STEPS": "10"}
    return base, env, data


def _conveyor(env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args], capture_output=True, text=True, env=env, timeout=timeout)


def _evaluations(home: Path) -> list[Path]:
    return sorted(home.glob("pipeline_root/**/Evaluator/evaluation/*/slice_metrics.json"), key=lambda p: int(p.parent.name))


def test_a_multiclass_pipeline_runs_serves_monitors_and_decides(wine_home, monkeypatch):
    base, env, data = wine_home
    monkeypatch.setenv(features.PATH_VARIABLE, env[features.PATH_VARIABLE])
    home, spans = base / "home", base / "spans"
    run = _conveyor(env, "run", "--home", str(home), "--spans-root", str(spans), "--span", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    version = versions.serving_version(home / "serving_model")
    assert version is not None, run.stdout[-3000:]
    assert "sparse_categorical_accuracy" in run.stdout and "binary-only" in run.stdout, run.stdout[-3000:]

    (recorded,) = _evaluations(home)
    metrics = json.loads(recorded.read_text())["candidate"]
    assert metrics["overall"]["sparse_categorical_accuracy"] > 0.6
    by_class = {name: m["sparse_categorical_accuracy"] for name, m in metrics.items() if name.startswith("cultivar=")}
    assert set(by_class) == {f"cultivar={c}" for c in wine.CULTIVARS} and min(by_class.values()) > 1 / 3, by_class
    assert not any("auc" in m or "fpr" in m for m in metrics.values())  # binary-only: not computed, never shown as 0
    verdict = json.loads((recorded.parent / "verdict.json").read_text())
    assert verdict["blessed"] and any("binary-only" in note for note in verdict["not_gated"]), verdict
    card = json.loads((home / "serving_model" / version / versions.CARD_DIR / versions.CARD_JSON).read_text())
    shown = {e["type"] for e in card["quantitative_analysis"]["performance_metrics"]}
    assert shown == {"example_count", "sparse_categorical_accuracy"} and "binary-only" in card["quantitative_analysis"]["binary_only"]

    held_out = data[-250:]  # span 2's last rows (a batch within the 256 limit): never trained on in this run
    instances = [{k: r[k] for k in features.active().serving_features if r[k] != ""} for r in held_out]
    with Serve(home, env=env, args=("--grpc-port", "0")) as server, server.client() as client:
        answer = client.post("/v1/models/wine:predict", json={"instances": instances}, headers={"X-Request-Id": "wine-1"})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert all(len(p["probabilities"]) == 3 and abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)
        assert all(p["predicted_class"] == max(range(3), key=p["probabilities"].__getitem__) for p in predictions)
        assert "probability" not in predictions[0]
        right = sum(p["predicted_class"] == wine.CULTIVARS.index(r["cultivar"]) for p, r in zip(predictions, held_out))
        assert right / len(held_out) > 0.6

        classified = client.post("/v1/models/wine:classify", json={"examples": instances[:4]})
        assert classified.status_code == 200, classified.text
        for scored, p in zip(classified.json()["result"], predictions):
            assert [label for label, _ in scored] == wine.CULTIVARS
            assert [score for _, score in scored] == pytest.approx(p["probabilities"], abs=1e-6)
        regressed = client.post("/v1/models/wine:regress", json={"examples": instances[:1]})
        assert regressed.status_code == 400 and "regression" in regressed.json()["error"], regressed.text

        address = re.search(r"gRPC at (\S+)", server.first_line).group(1)
        with grpc.insecure_channel(address) as channel:
            request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="wine"))
            for instance in instances[:3]:
                request.input.example_list.examples.add().ParseFromString(to_example(instance, tuple(instance)).SerializeToString())
            result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, timeout=TIMEOUT).result
        for found, p in zip(result.classifications, predictions):
            assert [c.label for c in found.classes] == wine.CULTIVARS
            assert [c.score for c in found.classes] == pytest.approx(p["probabilities"], abs=1e-6)

    logged = [json.loads(line) for path in sorted((home / "request_log").rglob("*.jsonl")) for line in path.read_text().splitlines()]
    by_id = [r for r in logged if r["request_id"] == "wine-1"]
    assert len(by_id) == 250 and by_id[0]["output"] == predictions[by_id[0]["index"]]  # the log holds what was answered

    labels = home / "labels"
    labels.mkdir()
    lines = [{"request_id": "wine-1", "index": i, "cultivar": r["cultivar"]} for i, r in enumerate(held_out)]
    lines.append({"request_id": "wine-1", "index": 0, "cultivar": "merlot"})  # outside the classes: skipped, counted
    (labels / "feed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    end = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
    monitored = _conveyor(env, "monitor", "--home", str(home), "--end", end, "--hours", "1", "--out", str(base / "monitor"))
    assert monitored.returncode in (0, 1), monitored.stdout + monitored.stderr
    live = re.search(r"live metrics, version \d+: 250 of \d+ labelled, accuracy (\d\.\d+)", monitored.stdout)
    assert live and abs(float(live.group(1)) - right / 250) < 1e-4, monitored.stdout
    assert "auc n/a (binary-only)" in monitored.stdout and "1 delivered values outside the label's classes" in monitored.stdout

    tick = _conveyor(env, "ct", "tick", "--home", str(home), "--spans-root", str(spans))
    assert tick.returncode == 0, tick.stdout[-3000:] + tick.stderr[-3000:]
    assert "new_data" in tick.stdout, tick.stdout[-3000:]
    second = _evaluations(home)[-1]
    assert second != recorded and json.loads(second.read_text())["baseline"]["overall"]["sparse_categorical_accuracy"] > 0.6

    listed = _conveyor(env, "models", "--home", str(home))
    accuracies = [float(m.group(1)) for line in listed.stdout.splitlines() if (m := re.match(r"[* ] \d{10} .* (\d\.\d{4})  \S+$", line))]
    assert listed.returncode == 0 and len(accuracies) == 2 and all(0.6 < a <= 1.0 for a in accuracies), listed.stdout  # no AUC column
    runs = _conveyor(env, "runs", "--home", str(home))
    assert runs.returncode == 0 and runs.stdout.count(" n/a ") == 2, runs.stdout  # AUC is binary-only
    compared = _conveyor(env, "runs", "compare", "1", "2", "--home", str(home))
    assert compared.returncode == 0 and "sparse_categorical_accuracy A, B, change" in compared.stdout, compared.stdout
