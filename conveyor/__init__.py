"""The front door: the `conveyor` command (cli/), local runs and their report (local/), Kubeflow
compile, submit and check (kubeflow/), the viewers, the analysis helpers the notebooks use, the demo."""
from typing import Any


def __getattr__(name: str) -> Any:
    """`conveyor.DriftReport`: TFX's Kubeflow v2 container entrypoint imports a custom artifact
    class by its type name (KFP schema titles are `<namespace>.<Name>`), and DataGate's
    DriftReport is named `conveyor.DriftReport`. Loaded on use, so `import conveyor` stays cheap."""
    if name == "DriftReport":
        from pipeline.components.data_gate import DriftReport

        return DriftReport
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
