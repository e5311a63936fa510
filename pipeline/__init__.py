"""The DAG. `pipeline.ModelCard` names the model card's artifact class where Kubeflow v2 looks for a
custom artifact type: its type name is `<module>.<Class>` (one dot), imported by that path in each
task that reads one (pipeline/components/model_card.py). Resolved on first use, so importing the
package imports no TFX."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ModelCard":
        from pipeline.components.model_card import ModelCardArtifact

        return ModelCardArtifact
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
