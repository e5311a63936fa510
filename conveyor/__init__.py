"""The front door: the `conveyor` command, local runs and their report, viewers, Kubeflow compile/submit.

Importing it defers `tfx.v1.extensions`, the Google Cloud clients no command here calls
(conveyor/deferred_imports.py): every entry point (the `conveyor` command, local_runner.py,
kubeflow_runner.py) comes through this package before TFX is imported.
"""
from typing import Any

from conveyor import deferred_imports

deferred_imports.defer_extensions()


def __getattr__(name: str) -> Any:
    """`conveyor.DriftReport`: TFX's Kubeflow v2 container entrypoint imports a custom artifact
    class by its type name (KFP schema titles are `<namespace>.<Name>`), and DataGate's
    DriftReport is named `conveyor.DriftReport`. Loaded on use, so `import conveyor` stays cheap."""
    if name == "DriftReport":
        from pipeline.components.data_gate import DriftReport

        return DriftReport
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
