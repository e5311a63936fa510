"""How the controller starts a run: an interface the front door implements (local runs, clusters).

CT decides; it never imports the front door. `conveyor ct` passes a Launch (for a local home, a
local run; with `--target kfp|vertex`, conveyor/kubeflow/cluster_ct.py's ClusterLaunch, which submits the
compiled pipeline), and the controller reads the outcome through RunOutcome. A Launch is given the
config naming the span to ingest and its namespace (`span`, `span_source`: an upstream span or a
feedback span the controller built) and the trigger ("new_data", "performance+drift", ...), which
a cluster run records in its name and labels.
"""
from __future__ import annotations

from typing import Callable, Protocol

from pipeline.configs import PipelineConfig


class RunOutcome(Protocol):
    """What the controller needs to know about a launched run."""

    run_id: str | None
    ok: bool
    span: int | None
    error: str | None
    pushed_path: str | None
    drift: dict | None
    timings: list[tuple[str, str, float]]

    @property
    def blessed(self) -> bool: ...

    @property
    def refusals(self) -> list[str]:
        """Why the candidate was not pushed, one sentence each."""
        ...


Launch = Callable[[PipelineConfig, str], RunOutcome]
