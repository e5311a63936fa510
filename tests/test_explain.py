"""`:explain` and `/card` on a real `conveyor serve` process over HTTP (serving/explain.py), on a copy
of small_run's home: attributions whose largest entry for a cash trip is its payment type, the
same probabilities `:predict` answers, one model version's card as HTML or JSON."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models import features
from models.instances import from_row
from pipeline import versions
from tests.serving_helpers import Serve, copy_home


@pytest.fixture(scope="module")
def served(small_run, tmp_path_factory):
    """(config, the served version, a republished copy of it without a model card, client)."""
    config = copy_home(small_run, tmp_path_factory.mktemp("explain") / "home")
    version = versions.serving_version(config.serving_root)
    old = str(int(version) - 1000)  # older than the served one, so it does not serve
    versions.stage(str(config.serving_root / version), config.serving_root, old)
    shutil.rmtree(Path(versions.staged_path(config.serving_root, old)) / versions.CARD_DIR)
    (Path(versions.staged_path(config.serving_root, old)) / versions.RECORD_FILE).unlink()
    versions.publish(config.serving_root, old, {})
    with Serve(config.home) as server, server.client() as client:
        yield config, version, old, client


def _trip(rows: list[dict], payment: str) -> dict:
    return from_row(next(r for r in rows if r["payment_type"] == payment))


def test_explain_answers_kserve_s_shape_and_a_cash_trip_is_explained_by_its_payment_type(served, shipped_rows):
    config, version, _, client = served
    instances = [_trip(shipped_rows, "Cash"), _trip(shipped_rows, "Credit Card")]
    answer = client.post(f"/v1/models/{config.model_name}:explain", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == version
    body = answer.json()
    assert set(body) == {"predictions", "explanations"} and len(body["explanations"]) == 2
    predicted = client.post(f"/v1/models/{config.model_name}:predict", json={"instances": instances}).json()["predictions"]
    for mine, theirs in zip(body["predictions"], predicted):  # the same model, the same instances
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)
        assert mine["predicted_class"] == theirs["predicted_class"]
    cash, card = (e["attributions"] for e in body["explanations"])
    assert {a["feature"] for a in cash} == set(features.active().model_features)
    assert cash[0]["feature"] == "payment_type" and cash[0]["value"] == "Cash" and cash[0]["attribution"] < 0
    assert card[0]["feature"] == "payment_type" and card[0]["attribution"] > 0
    magnitudes = [abs(a["attribution"]) for a in cash]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for a in cash:  # attribution = p(x) - the average probability with the feature at its training values
        assert a["attribution"] == pytest.approx(body["predictions"][0]["probability"] - a["expected"], abs=1e-9)


def test_explain_refuses_what_predict_refuses_and_a_version_without_a_card(served, shipped_rows):
    config, _, old, client = served
    bad = client.post(f"/v1/models/{config.model_name}:explain", json={"instances": [{**_trip(shipped_rows, "Cash"), "fare": -3.0}]})
    assert bad.status_code == 400 and "fare" in bad.json()["error"]
    missing = client.post(f"/v1/models/{config.model_name}/versions/{old}:explain", json={"instances": [_trip(shipped_rows, "Cash")]})
    assert missing.status_code == 409
    assert missing.json()["error"] == f"version {old} has no model card (pushed before model cards): nothing to explain against"
    assert client.get(f"/v1/models/{config.model_name}:explain").status_code == 405


def test_a_version_s_card_is_served_as_html_or_json(served):
    config, version, old, client = served
    page = client.get(f"/v1/models/{config.model_name}/versions/{version}/card")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == Path(versions.card_file(config.serving_root, version, versions.CARD_HTML)).read_bytes()
    data = client.get(f"/v1/models/{config.model_name}/versions/{version}/card", headers={"Accept": "application/json"})
    assert data.headers["content-type"] == "application/json"
    assert data.json() == json.loads(Path(versions.card_file(config.serving_root, version, versions.CARD_JSON)).read_text())
    assert data.json()["model_details"]["version"]["name"] == version
    none = client.get(f"/v1/models/{config.model_name}/versions/{old}/card")
    assert none.status_code == 404 and none.json()["error"] == f"version {old} has no model card"
    assert client.get(f"/v1/models/{config.model_name}/versions/999/card").status_code == 404
    assert client.post(f"/v1/models/{config.model_name}/versions/{version}/card").status_code == 405
