"""What the REST API's `:explain` and `/card` routes answer (serving/rest_api.py routes them).

`:explain` follows KServe's v1 protocol: `{"instances": [...]}` as for `:predict`, answered with
`{"predictions": [...], "explanations": [...]}`, one explanation per instance: every model feature's
attribution against the version's training baseline, largest first (models/attribution.py: what
each attribution means, one model call for all instances and features). The baseline is the one the
version's model card records (`model_parameters.attribution_baseline`); a version pushed before
model cards has none, and `:explain` says so. Explanations are inspections, not served decisions:
they are not written to the request log.

`/card` answers a version's model card: the HTML page, or its JSON when the client asks for
`application/json`.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from models import attribution, features
from models.features import CLASS_KEY, PROBABILITY_KEY
from models.instances import Instance
from models.saved_model import LoadedModel
from pipeline import versions

HTML, JSON = "text/html; charset=utf-8", "application/json"


class NoCard(LookupError):
    """The version cannot be explained against its card: it has none (pushed before cards were
    written), or it is multi-class (attributions to one probability are binary-only)."""


@functools.lru_cache(maxsize=8)
def _card(version_path: Path) -> dict[str, Any]:
    path = version_path / versions.CARD_DIR / versions.CARD_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NoCard(f"version {version_path.name} has no model card (pushed before model cards): nothing to explain against") from None


def explain(model: LoadedModel, instances: list[Instance]) -> dict[str, Any]:
    """The KServe v1 `:explain` body for `instances` answered by `model`."""
    if features.active().label.multiclass:
        raise NoCard(f"version {model.version} is multi-class: explanations (attributions to one probability) are binary-only")
    baseline = _card(model.path)["model_parameters"]["attribution_baseline"]
    probabilities, found = attribution.attributions([i.features for i in instances], baseline, model.probabilities)
    return {
        "predictions": [{PROBABILITY_KEY: p, CLASS_KEY: int(p > 0.5)} for p in probabilities],
        "explanations": [{"attributions": [vars(a) for a in attributions]} for attributions in found],
    }


def card(serving_root: str | Path, version: str, as_json: bool) -> tuple[bytes, str]:
    """Version `version`'s card and its content type; NoCard when it has none."""
    name = versions.CARD_JSON if as_json else versions.CARD_HTML
    path = versions.card_file(serving_root, version, name)
    if not os.path.exists(path):
        raise NoCard(f"version {version} has no model card")
    return Path(path).read_bytes(), JSON if as_json else HTML
