"""How a setting's text becomes its value, and the values each setting may take (pipeline/configs.py).

Numbers have ranges, rollout policies their form (pipeline/rollouts.py). A value a setting cannot
take is a SettingError naming the CONVEYOR_* variable it came from, or the setting, so the front
door can name the flag.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable

from pipeline import rollouts

ENV_PREFIX = "CONVEYOR_"

# Where Beam runs: on this machine (in_memory, or multi_processing with beam_workers processes),
# Dataflow, or a Flink / Spark cluster through its Beam job server (PortableRunner). The local modes
# name Beam's FnApiRunner, the runner the DirectRunner ends up on for these batch pipelines: since
# Beam 2.68 the DirectRunner first tries the Prism runner, downloading its binary at run time (and
# running on it if the download works), then falls back; the attempt converts each pipeline once
# more and cost ~5 CPU s per run (docs/benchmarks.md).
BEAM_MODES = ("in_memory", "multi_processing", "dataflow", "flink", "spark")
LOCAL_BEAM_MODES = ("in_memory", "multi_processing")
# Where the pipeline finds artifacts of earlier runs (the span window and the baseline model):
#   "mlmd"   TFX resolvers querying ML Metadata (LocalDagRunner: the default);
#   "stores" components reading the validated-span index under the pipeline root and the pushed
#            models under the serving root, for orchestrators that compile no custom resolver
#            (KubeflowV2DagRunner: Kubeflow Pipelines v2 and Vertex AI).
HISTORY_SOURCES = ("mlmd", "stores")
# How Transform and Trainer find the model code:
#   "installed"   module paths of the installed `conveyor` package (`make setup` installs it in the
#                 venv, the Dockerfile in the image), with a fingerprint of models/ in custom_config
#                 so a code change invalidates the cache (the default: nothing is built per run);
#   "module_file" TFX packages models/*.py into a wheel per run (its name carries a content hash):
#                 two `setup.py bdist_wheel` and two `pip install` subprocesses, ~5 s of every run.
USER_CODE_FORMS = ("installed", "module_file")
DRIFT_POLICIES = ("block", "warn")
ESTIMATE_ACTIONS = ("off", "warn", "trigger")  # ct_estimated_performance
TUNE_OBJECTIVES = ("auc", "binary_accuracy")  # models/tuning.py OBJECTIVES
# Span namespaces (data/spans_io.py): "upstream" spans under spans_root, "feedback" spans the CT
# controller builds from labelled served traffic under <home>/feedback/spans.
SPAN_SOURCES = ("upstream", "feedback")
# The official TFX image of the locked TFX version: KubeflowV2DagRunner's default and the Dockerfile's base.
TFX_IMAGE = "gcr.io/tfx-oss-public/tfx:1.21.0"


class SettingError(ValueError):
    """A setting with a value it cannot take. `source`: "env" (a CONVEYOR_* variable), "override"
    (a runner's flag or a caller's argument) or "default"."""

    def __init__(self, field: str, value: Any, expected: str, source: str = "override"):
        self.field, self.value, self.expected, self.source = field, value, expected, source
        named = f"{ENV_PREFIX}{field.upper()}={value}" if source == "env" else f"{field}={value!r}"
        super().__init__(f"{named}: {expected}")


def _at_least(low: float) -> tuple[Any, str]:
    return (lambda v: v >= low), f"expected a number >= {low:g}"


def _above(low: float) -> tuple[Any, str]:
    return (lambda v: v > low), f"expected a number > {low:g}"


_FRACTION = ((lambda v: 0.0 <= v <= 1.0), "expected a number from 0 to 1")


def _is_policy(text: str) -> bool:
    try:
        rollouts.parse_policy(text)
    except ValueError:
        return False
    return True


_POLICY = (_is_policy, rollouts.EXPECTED)
# The range of every numeric setting that has one (None, where allowed, is not checked).
RANGES: dict[str, tuple[Any, str]] = {
    **{name: _at_least(1) for name in (
        "window_spans", "train_buckets", "eval_buckets", "train_steps", "eval_steps", "infra_check_examples",
        "max_request_bytes", "max_batch_instances", "max_string_bytes", "max_connections", "guard_min_labels",
        "monitor_min_predictions", "live_min_labels", "live_min_class_labels", "mysql_port", "tune_max_trials",
        "fairness_min_examples", "cbpe_min_class_rows",
    )},
    **{name: _at_least(0) for name in (
        "span", "feedback_window_spans", "beam_workers", "serving_workers", "seed", "min_rows_ratio",
        "completeness_drop", "median_shift", "batch_gather_seconds", "max_extra_versions",
        "tensorflow_intra_op_parallelism", "request_log_max_bytes", "serving_port", "retune_every_retrains",
        "worker_recycle_swaps", "worker_recycle_growth_mb",
    )},
    **{name: _above(0) for name in (
        "poll_seconds", "idle_timeout_seconds", "header_timeout_seconds", "body_timeout_seconds",
        "load_retry_max_seconds", "request_log_retention_hours", "monitor_window_hours", "ct_schedule_hours",
        "tune_max_seconds",
    )},
    "broken_feed_factor": _above(1),
    "broken_meaning_jsd": ((lambda v: 0.0 < v <= 1.0), "expected a number above 0 and at most 1"),
    "tensorflow_inter_op_parallelism": _at_least(-1),
    "serving_port": ((lambda v: 0 <= v <= 65535), "expected a port 0-65535"),
    "guard_alpha": ((lambda v: 0.0 < v < 1.0), "expected a number between 0 and 1"),
    "live_min_accuracy": _FRACTION,
    "live_max_accuracy_drop": _FRACTION,
    "rollout_max_error_rate": _FRACTION,
    "rollout_max_latency_ratio": _above(1),
    "rollout": _POLICY,
    "ct_rollout": _POLICY,
}


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number") from None


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false (also 1/0, yes/no, on/off)")


PARSERS: dict[str, Callable[[str], Any]] = {
    "Path": Path,
    "int": _parse_int,
    "float": _parse_float,
    "bool": _parse_bool,
    "str": str,
    "int | None": lambda text: _parse_int(text) if text else None,
    "Path | None": lambda text: Path(text) if text else None,
    "str | None": lambda text: text or None,
    "tuple[str, ...]": lambda text: tuple(shlex.split(text)),
}
