"""Every tunable of the pipeline, in one place.

Defaults suit a laptop run on the bundled spans. Any field can be overridden by an environment
variable named CONVEYOR_<FIELD> (e.g. CONVEYOR_TRAIN_STEPS=500) or by the runners' flags.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CONVEYOR_"

BEAM_MODES = ("in_memory", "multi_processing")
DRIFT_POLICIES = ("block", "warn")


@dataclass(frozen=True)
class Threshold:
    """Blessing rule for one TFMA metric on the overall slice."""

    metric: str
    lower_bound: float
    # Largest drop against the baseline (last blessed model) still accepted; None = no change check.
    max_drop: float | None = None


@dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "conveyor-taxi"
    # Where runs write: pipeline_root/, metadata.sqlite, serving_model/, logs/; the server and
    # monitoring add request_log/, labels/ (delivered by whoever learns the outcomes), monitoring/.
    home: Path = REPO_ROOT / "outputs"
    spans_root: Path = REPO_ROOT / "data" / "spans"
    schema_path: Path = REPO_ROOT / "schema" / "schema.pbtxt"
    preprocessing_module: Path = REPO_ROOT / "models" / "preprocessing.py"
    model_module: Path = REPO_ROOT / "models" / "model.py"

    # Data: each run ingests one span N (the newest, or `span` if set) and trains on the validated
    # spans numbered N - window_spans + 1 .. N (a span blocked by DataGate leaves a hole).
    span: int | None = None
    window_spans: int = 2
    train_buckets: int = 3  # hash split of each span: train:eval = 3:1
    eval_buckets: int = 1

    # Drift of each span against the previous validated span, and skew of serving statistics
    # against it (pipeline/drift.py). Thresholds: L-infinity for string features, Jensen-Shannon
    # divergence over the baseline's deciles for numeric ones. Real span-to-span values on the
    # shipped data stay below 0.05 (L-inf) and 0.025 (JSD).
    drift_thresholds: Mapping[str, float] = field(
        default_factory=lambda: {
            "payment_type": 0.15,
            "company": 0.2,
            "fare": 0.05,
            "trip_miles": 0.05,
            "trip_seconds": 0.05,
            "trip_start_hour": 0.05,
            "tips": 0.04,
            "dropoff_latitude": 0.05,
        }
    )
    completeness_drop: float = 0.2  # largest accepted drop in the fraction of examples with a value
    drift_policy: str = "warn"  # "block": drift over threshold stops the run; "warn": report and go on
    serving_statistics_path: Path | None = None  # TFDV statistics of served traffic, for skew

    # Training.
    train_steps: int = 500  # more overfits: eval accuracy 0.895 at 500, 0.889 at 1000, 0.886 at 2000 (make bench data)
    eval_steps: int = 50
    hparams: Mapping[str, Any] = field(default_factory=dict)  # overrides of models.model.HParams
    seed: int = 0

    # Evaluation and blessing.
    thresholds: tuple[Threshold, ...] = (
        Threshold("binary_accuracy", lower_bound=0.7, max_drop=0.01),
        Threshold("auc", lower_bound=0.7, max_drop=0.01),
    )

    # Beam: in_memory (tests, small data) or multi_processing with beam_workers processes
    # (0 = one per core).
    beam_mode: str = "in_memory"
    beam_workers: int = 0

    enable_cache: bool = True

    # Continuous training (ct/): when the controller retrains besides new spans and on demand.
    ct_schedule_hours: float = 24.0  # retrain at least this often
    ct_min_feedback: int = 200  # labelled feedback rows needed before live accuracy counts
    ct_min_live_accuracy: float = 0.75  # live binary accuracy below this fires "performance"
    ct_max_accuracy_drop: float = 0.05  # ... as does live accuracy this far below the offline one

    @property
    def ct_dir(self) -> Path:
        return self.home / "ct"

    @property
    def feedback_dir(self) -> Path:
        return self.home / "feedback"

    # Infra check before Pusher: how many eval examples the candidate must answer through the
    # serving code.
    infra_check_examples: int = 32

    # Serving (serving/): the REST server, its limits and how often it looks for a new version.
    model_name: str = "taxi"
    serving_host: str = "127.0.0.1"
    serving_port: int = 8501
    max_request_bytes: int = 1_000_000
    max_batch_instances: int = 256
    poll_seconds: float = 2.0

    # Monitoring (monitoring/): window length. Skew against training and drift between windows
    # use pipeline/drift.py with drift_thresholds and completeness_drop, like DataGate.
    monitor_window_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.beam_mode not in BEAM_MODES:
            raise ValueError(f"beam_mode must be one of {BEAM_MODES}, got {self.beam_mode!r}")
        if self.drift_policy not in DRIFT_POLICIES:
            raise ValueError(f"drift_policy must be one of {DRIFT_POLICIES}, got {self.drift_policy!r}")
        if self.window_spans < 1:
            raise ValueError("window_spans must be >= 1")

    @property
    def pipeline_root(self) -> Path:
        return self.home / "pipeline_root"

    @property
    def metadata_path(self) -> Path:
        return self.home / "metadata.sqlite"

    @property
    def serving_root(self) -> Path:
        return self.home / "serving_model"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def request_log_root(self) -> Path:
        return self.home / "request_log"

    @property
    def labels_root(self) -> Path:
        return self.home / "labels"

    @property
    def monitoring_root(self) -> Path:
        return self.home / "monitoring"

    def beam_args(self) -> list[str]:
        args = ["--runner=DirectRunner", f"--direct_running_mode={self.beam_mode}"]
        workers = self.beam_workers or (os.cpu_count() or 1)
        args.append(f"--direct_num_workers={workers if self.beam_mode == 'multi_processing' else 1}")
        return args

    def trainer_config(self) -> dict[str, Any]:
        return {**self.hparams, "seed": self.seed}

    def replace(self, **changes: Any) -> "PipelineConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _parse(kind: Any, text: str) -> Any:
    if kind in ("Path", Path):
        return Path(text)
    if kind in ("int", int):
        return int(text)
    if kind in ("float", float):
        return float(text)
    if kind in ("bool", bool):
        return text.lower() in ("1", "true", "yes", "on")
    if kind in ("int | None",):
        return int(text) if text else None
    if kind in ("Path | None",):
        return Path(text) if text else None
    if kind in ("float", float):
        return float(text)
    return text


def load(**overrides: Any) -> PipelineConfig:
    """Defaults, then CONVEYOR_* environment variables, then explicit `overrides` (None = unset)."""
    from_env = {}
    for f in dataclasses.fields(PipelineConfig):
        text = os.environ.get(ENV_PREFIX + f.name.upper())
        if text is not None and f.type in ("Path", "int", "bool", "str", "float", "int | None", "Path | None"):
            from_env[f.name] = _parse(f.type, text)
    return PipelineConfig().replace(**from_env).replace(**overrides)
