"""Every tunable of the pipeline, in one place.

Defaults suit a laptop run on the bundled spans. Any field can be overridden by an environment
variable named CONVEYOR_<FIELD> (e.g. CONVEYOR_TRAIN_STEPS=500) or by the runners' flags.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from models import features
from pipeline import project, settings
from pipeline.settings import ENV_PREFIX, PARSERS, RANGES, SettingError
from pipeline.thresholds import FairnessThreshold, Threshold

REPO_ROOT = Path(__file__).resolve().parent.parent



@dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "conveyor-taxi"
    # Where runs write: pipeline_root/, metadata.sqlite, serving_model/, logs/; the server and
    # monitoring add request_log/, labels/ (delivered by whoever learns the outcomes), monitoring/.
    home: Path = REPO_ROOT / "outputs"
    spans_root: Path = REPO_ROOT / "data" / "spans"
    schema_path: Path = REPO_ROOT / "schema" / "schema.pbtxt"
    completeness_path: Path = REPO_ROOT / "schema" / "completeness.json"  # floors, from schema/derive.py
    # The feature contract (models/contract.py): columns, transforms, label, slices, and the defaults
    # of model_name, drift_thresholds and the card's texts below. configs.load() makes it the
    # process's active one (models/features.py).
    contract_path: Path = features.DEFAULT_PATH
    preprocessing_module: Path = REPO_ROOT / "models" / "preprocessing.py"
    model_module: Path = REPO_ROOT / "models" / "model.py"

    # Data: each run ingests one span N (the newest, or `span` if set) of one namespace
    # (`span_source`, see settings.SPAN_SOURCES) and trains on the validated spans of both namespaces: upstream
    # spans K-window_spans+1..K and feedback spans M-feedback_window_spans+1..M, where K (or M) is this
    # run's span in its own namespace and the newest validated span in the other (a span blocked by
    # DataGate leaves a hole).
    span: int | None = None
    span_source: str = "upstream"
    window_spans: int = 2
    feedback_window_spans: int = 2
    train_buckets: int = 3  # hash split of each span: train:eval = 3:1
    eval_buckets: int = 1

    # Drift of each span against the previous validated span, and skew of serving statistics
    # against it (pipeline/drift.py): threshold by feature. Empty: the feature contract's.
    drift_thresholds: Mapping[str, float] = field(default_factory=dict)
    completeness_drop: float = 0.2  # largest accepted drop in the fraction of examples with a value
    # Largest accepted |ln(median ratio)| of a numeric feature with a positive median (0.25: x1.28 or
    # x0.78), raised to the samples' own noise when that is larger. The shipped spans score 0.105 on
    # fare, trip_miles and trip_seconds; trip_miles x1.5 scores 0.405.
    median_shift: float = 0.25
    drift_policy: str = "warn"  # "block": drift over threshold stops the run; "warn": report and go on
    # Gates DataGate applies under every drift policy (pipeline/validation.py), besides the schema
    # and the completeness floors. A span with fewer rows than min_rows_ratio x the previous
    # validated span's is blocked (the shipped spans: 5,000 after 10,000; set 0 to allow any size).
    min_rows_ratio: float = 0.1
    # A broken feed: a numeric feature without an upper bound in the schema whose upper decile is
    # more than broken_feed_factor times (or less than 1/broken_feed_factor of) the previous span's.
    # Between the shipped spans the ratio is 0.46-1.0 (trip_miles 10.3 vs 4.7); unit changes are
    # x60 and more (seconds -> minutes or ms, dollars -> cents, miles -> feet).
    broken_feed_factor: float = 10.0
    # A broken meaning: a drift-scored numeric feature without a schema maximum whose decile JSD against the previous
    # span exceeds this (0.76 at most). Against span 2: real spans <= 0.021; legitimate partitions up to 0.618 (trip_miles,
    # trips >= 3 miles; bounded features such as trip_start_hour, 0.74 in three hours, are not judged); trip_miles<->trip_seconds
    # 0.749. fare<->trip_miles scores 0.518/0.570: no JSD limit separates it, the contract's [plausibility] does (docs/pipeline.md).
    broken_meaning_jsd: float = 0.7
    serving_statistics_path: Path | None = None  # TFDV statistics of served traffic, for skew

    # Training.
    train_steps: int = 500  # more overfits: eval accuracy 0.895 at 500, 0.889 at 1000, 0.886 at 2000 (make bench data)
    eval_steps: int = 50
    hparams: Mapping[str, Any] = field(default_factory=dict)  # overrides of models.model.HParams
    seed: int = 0

    # Tuning (models/tuning.py; docs/pipeline.md#tuning). With `tune` the run searches the
    # hyperparameters with TFX's Tuner on its window and trains with the best; without, the
    # Trainer takes the newest Tuner's choice, or the defaults before the first tuning. The search
    # maximises the validation `tune_objective` (auc or binary_accuracy) over at most
    # tune_max_trials trials (the first: the defaults), starting none after tune_max_seconds.
    # Each trial trains train_steps steps: ~8 s on 2 cores for the default window of 2 spans.
    tune: bool = False
    tune_objective: str = "auc"
    tune_max_trials: int = 10
    tune_max_seconds: float = 180.0

    # Evaluation and blessing (docs/pipeline.md, "Blessing", has the measurements behind them).
    thresholds: tuple[Threshold, ...] = (
        Threshold("binary_accuracy", lower_bound=0.7, max_drop=0.015, slice_max_drop=0.08),
        Threshold("auc", lower_bound=0.7, max_drop=0.01, slice_max_drop=0.05),
    )
    min_slice_examples: int = 100  # a feature slice with fewer eval examples is not gated
    min_class_examples: int = 10  # AUC, precision, recall gate only with this many of each class
    # Fairness (pipeline/fairness.py): a slice's false positive / negative rate may not move further
    # from the overall rate than under the baseline by more than this, on slices with at least
    # fairness_min_examples eval examples of the class the rate is conditioned on (negatives for the
    # false positive rate, positives for the false negative rate). Above the seed-to-seed spread of
    # the widening on span 1 at 500 steps, seeds 0-4 (benchmarks/fairness_spread.py): largest 0.070
    # for the false positive rate (on slices of 30+ or 100+ negatives), 0.114 for the false
    # negative rate (slices of 30+ positives; with 100+ only the card slice has enough).
    fairness_thresholds: tuple[FairnessThreshold, ...] = (
        FairnessThreshold("fpr", max_gap_widening=0.10),
        FairnessThreshold("fnr", max_gap_widening=0.15),
    )
    fairness_min_examples: int = 100

    # The model card (pipeline/model_card.py): the intended use and known limitations as written
    # by the model's owners (the card adds what the data shows; empty: the contract's), and what
    # launched the run.
    card_intended_use: str = ""
    card_limitations: tuple[str, ...] = ()
    trigger: str = "conveyor run (a person)"  # the CT controller names its triggers

    # Beam (see settings.BEAM_MODES), passed to every Beam-powered component. beam_workers: processes for
    # multi_processing (0 = one per core). Remote runners get --setup_file so workers install
    # this project (beam_setup_file; None = this checkout's setup.py).
    beam_mode: str = "in_memory"
    beam_workers: int = 0
    gcp_project: str | None = None  # Dataflow, and Vertex AI for kubeflow_runner --submit
    gcp_region: str | None = None
    beam_temp_location: str | None = None  # Dataflow's temp_location (gs://...)
    beam_job_endpoint: str | None = None  # flink / spark: the Beam job server, host:port
    beam_environment_type: str = "DOCKER"  # flink / spark: how workers run the Python SDK harness
    beam_environment_config: str | None = None  # e.g. the SDK harness image for DOCKER
    beam_setup_file: str | None = None
    beam_extra_args: tuple[str, ...] = ()  # anything else, e.g. ("--max_num_workers=10",)

    # ML Metadata: SQLite at metadata_path unless mysql_host is set. The MySQL password is read
    # only from the environment (CONVEYOR_MYSQL_PASSWORD) when connecting, never stored here.
    mysql_host: str | None = None
    mysql_port: int = 3306
    mysql_database: str = "conveyor_mlmd"
    mysql_user: str = "conveyor"
    history: str = "mlmd"  # see settings.HISTORY_SOURCES
    user_code: str = "installed"  # see settings.USER_CODE_FORMS

    # Production locations (URIs such as gs://bucket/conveyor/...); None = the local paths above.
    remote_pipeline_root: str | None = None
    remote_serving_root: str | None = None
    remote_spans_root: str | None = None
    remote_feedback_spans_root: str | None = None
    remote_schema: str | None = None

    enable_cache: bool = True
    # How a pushed version takes traffic (pipeline/rollouts.py: direct, shadow or canary:P; CT's runs use
    # ct_rollout), and the limits of a candidate's errors and model-call time (ct/rollout_guard.py).
    rollout: str = "direct"
    ct_rollout: str = "direct"
    rollout_max_error_rate: float = 0.01
    rollout_max_latency_ratio: float = 2.0

    # Continuous training (ct/): besides new spans, on demand, performance and drift (the live
    # rules below), retrain at least every ct_schedule_hours. After a push, the guard rolls the new
    # version back when, on at least guard_min_labels labelled predictions it served, it is right
    # significantly less often than the version it replaced re-scored on the same instances
    # (one-sided exact McNemar test, p < guard_alpha).
    ct_schedule_hours: float = 24.0
    guard_min_labels: int = 200
    guard_alpha: float = 0.01
    # Re-tuning (ct/retune.py): a launched run searches the hyperparameters again when this many
    # models were trained since the newest tuning (0: never by count), or when a performance
    # retrain did not bring live accuracy back above the floor (retune_on_failed_recovery).
    retune_every_retrains: int = 10
    retune_on_failed_recovery: bool = True
    # Before the labels arrive, the serving version's accuracy estimated from its calibrated
    # probabilities (CBPE, monitoring/estimate.py), judged by the live rules above: "off" (not
    # estimated on ticks), "warn" (an alert in the decision) or "trigger" (a run of the newest
    # upstream span, recorded as acting on an estimate; once per version and evidence window).
    # Enough labels, and the realized accuracy decides instead.
    ct_estimated_performance: str = "warn"

    @property
    def ct_dir(self) -> Path:
        return self.home / "ct"

    @property
    def feedback_dir(self) -> Path:
        return self.home / "feedback"

    @property
    def feedback_spans_root(self) -> Path:
        """Where the CT controller writes feedback spans (served traffic with its labels)."""
        return self.feedback_dir / "spans"

    # Infra check before Pusher: how many eval examples the candidate must answer through the
    # serving code.
    infra_check_examples: int = 32

    # Serving (serving/): the REST server, its limits and how often it looks for a new version.
    model_name: str = ""  # empty: the contract's
    serving_host: str = "127.0.0.1"
    serving_port: int = 8501
    serving_workers: int = 1  # processes sharing the port, each with its own model and log file (0 = one per core)
    max_request_bytes: int = 1_000_000
    max_batch_instances: int = 256  # per request, and per model call of the request batcher
    # How long a batch may wait for the next requests of keep-alive clients answered moments ago
    # (clients that send again as soon as they are answered); 0 = answer every loop turn at once.
    batch_gather_seconds: float = 0.002
    max_string_bytes: int = 1024  # longest string feature value (logged verbatim)
    poll_seconds: float = 2.0
    max_connections: int = 1024  # per worker (and below the descriptor limit)
    idle_timeout_seconds: float = 5.0  # a keep-alive connection may wait this long for its next request
    header_timeout_seconds: float = 10.0  # from a request's first byte to its last header
    body_timeout_seconds: float = 30.0  # from the headers to the body's last byte
    max_extra_versions: int = 2  # versions kept loaded besides the serving one (/versions/{v} requests)
    load_retry_max_seconds: float = 300.0  # a failed load is retried after 2 x poll_seconds, doubling to this
    # A worker is replaced (a new one loads, then the old one drains; serving/recycling.py) after this
    # many hot swaps, or once its memory grew this much: TensorFlow keeps ~2 MB per folded swap (0 = never).
    worker_recycle_swaps: int = 100
    worker_recycle_growth_mb: int = 1024
    # TensorFlow thread pools of each worker (0 = TensorFlow's default, one thread per core each;
    # inter-op -1 = run a model's ops in the calling thread), as TF Serving's flags of those names.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    request_log_retention_hours: float = 168.0  # hour partitions older than this are deleted
    request_log_max_bytes: int = 10_000_000_000  # then the oldest while the log is larger

    # Monitoring (monitoring/), for `conveyor monitor` and the CT controller alike. Skew against
    # training and drift between windows use pipeline/drift.py with the thresholds DataGate uses, on
    # at least monitor_min_predictions predictions. Live metrics of a version: accuracy once
    # live_min_labels of its predictions are labelled, AUC once each class has live_min_class_labels;
    # accuracy below live_min_accuracy, or more than live_max_accuracy_drop below the version's own
    # offline (Evaluator) accuracy, is a performance alert.
    monitor_window_hours: float = 24.0
    monitor_min_predictions: int = 500
    live_min_labels: int = 200
    live_min_class_labels: int = 20
    live_min_accuracy: float = 0.75
    live_max_accuracy_drop: float = 0.05
    # Estimated performance before labels (CBPE, monitoring/estimate.py) on as many predictions as
    # distances need (monitor_min_predictions): trusted only when the version's eval split holds at
    # least cbpe_min_class_rows rows of each class (fewer leave ~5 rows of a class per reliability
    # bin: its calibration cannot be checked).
    cbpe_min_class_rows: int = 50
    # The fields above left empty and filled from the contract (replace() re-derives them).
    _from_contract: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        contract = features.read(str(self.contract_path))
        defaults = {"model_name": contract.model_name, "drift_thresholds": contract.drift_thresholds(),
                    "card_intended_use": contract.intended_use, "card_limitations": contract.limitations}
        unset = tuple(name for name in defaults if not getattr(self, name))
        for name in unset:
            object.__setattr__(self, name, defaults[name])
        object.__setattr__(self, "_from_contract", frozenset(unset))
        for name, allowed in (
            ("beam_mode", settings.BEAM_MODES),
            ("history", settings.HISTORY_SOURCES),
            ("user_code", settings.USER_CODE_FORMS),
            ("drift_policy", settings.DRIFT_POLICIES),
            ("ct_estimated_performance", settings.ESTIMATE_ACTIONS),
            ("span_source", settings.SPAN_SOURCES),
            ("tune_objective", settings.TUNE_OBJECTIVES),
        ):
            if getattr(self, name) not in allowed:
                raise SettingError(name, getattr(self, name), f"expected one of {', '.join(allowed)}")
        for name, (check, expected) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not check(value):
                raise SettingError(name, value, expected)
        required = {
            "dataflow": ("gcp_project", "gcp_region", "beam_temp_location"),
            "flink": ("beam_job_endpoint",),
            "spark": ("beam_job_endpoint",),
        }.get(self.beam_mode, ())
        missing = [name for name in required if not getattr(self, name)]
        if missing:
            flags = ", ".join(f"--{n.replace('_', '-')} (or {ENV_PREFIX}{n.upper()})" for n in missing)
            raise ValueError(f"beam_mode={self.beam_mode} needs {flags}")

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

    @property
    def pipeline_root_uri(self) -> str:
        return self.remote_pipeline_root or str(self.pipeline_root)

    @property
    def serving_root_uri(self) -> str:
        return self.remote_serving_root or str(self.serving_root)

    @property
    def spans_root_uri(self) -> str:
        return self.remote_spans_root or str(self.spans_root)

    @property
    def feedback_spans_root_uri(self) -> str:
        return self.remote_feedback_spans_root or str(self.feedback_spans_root)

    @property
    def input_root_uri(self) -> str:
        """Where this run's span is read from: the root of its namespace."""
        return self.spans_root_uri if self.span_source == "upstream" else self.feedback_spans_root_uri

    @property
    def tuning_index_uri(self) -> str:
        """Where the "stores" Tuner records each search, read by LatestTunedHyperparameters."""
        return self.pipeline_root_uri.rstrip("/") + "/tuned_hyperparameters"

    @property
    def validated_spans_uri(self) -> str:
        """The index of spans that passed DataGate, read by the "stores" span window."""
        return self.pipeline_root_uri.rstrip("/") + "/validated_spans"

    def beam_args(self) -> list[str]:
        """Beam pipeline args for every Beam-powered component."""
        if self.beam_mode in settings.LOCAL_BEAM_MODES:
            workers = self.beam_workers or (os.cpu_count() or 1)
            args = [
                "--runner=FnApiRunner",
                f"--direct_running_mode={self.beam_mode}",
                f"--direct_num_workers={workers if self.beam_mode == 'multi_processing' else 1}",
            ]
        elif self.beam_mode == "dataflow":
            args = [
                "--runner=DataflowRunner",
                f"--project={self.gcp_project}",
                f"--region={self.gcp_region}",
                f"--temp_location={self.beam_temp_location}",
            ]
        else:  # flink, spark: submitted to the cluster's Beam job server
            args = [
                "--runner=PortableRunner",
                f"--job_endpoint={self.beam_job_endpoint}",
                f"--environment_type={self.beam_environment_type}",
            ]
            if self.beam_environment_config:
                args.append(f"--environment_config={self.beam_environment_config}")
        if self.beam_mode in settings.LOCAL_BEAM_MODES:
            # TFX builds a throwaway sdist of itself per Beam component and run (~52 MB, ~1 s) unless
            # a dependency flag says the workers have their packages. The local runner's workers run
            # in this venv and never pull an image; naming the image whose packages match the lock
            # tells TFX so (a --setup_file would make Beam build an sdist of Conveyor instead).
            args.append(f"--sdk_container_image={settings.TFX_IMAGE}")
        else:  # remote workers install Conveyor from setup.py
            args.append(f"--setup_file={self.beam_setup_file or REPO_ROOT / 'setup.py'}")
        return args + list(self.beam_extra_args)

    def contract_config(self) -> dict[str, str]:
        """The custom_config entries carrying the contract into Transform, Tuner and Trainer: its
        text and digest (models/features.py config_entries)."""
        return features.config_entries(self.contract_path)

    def trainer_config(self) -> dict[str, Any]:
        return {**self.hparams, "seed": self.seed, **self.contract_config()}

    def tuner_config(self) -> dict[str, Any]:
        """The Tuner's custom_config (models/tuning.py tuner_fn)."""
        return {
            "seed": self.seed,
            "objective": self.tune_objective,
            "max_trials": self.tune_max_trials,
            "max_seconds": self.tune_max_seconds,
            **self.contract_config(),
        }

    def replace(self, **changes: Any) -> "PipelineConfig":
        """A copy with `changes` (None = unchanged); another contract brings its own defaults."""
        given = {k: v for k, v in changes.items() if v is not None}
        unset = {name: type(getattr(self, name))() for name in self._from_contract}
        return dataclasses.replace(self, **{**unset, **given})


def to_env(config: PipelineConfig) -> dict[str, str]:
    """CONVEYOR_* variables from which load() rebuilds `config`'s plain fields (for a child process)."""
    env = {}
    for f in dataclasses.fields(PipelineConfig):
        if f.type not in PARSERS:
            continue
        value = getattr(config, f.name)
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = shlex.join(value)
        else:
            text = str(value)
        env[ENV_PREFIX + f.name.upper()] = text
    return env


def load(**overrides: Any) -> PipelineConfig:
    """Defaults, then the project's paths (pipeline/project.py), then CONVEYOR_* environment
    variables, then explicit `overrides` (None = unset).
    A value a setting cannot take is a SettingError naming the variable (source "env") or the
    setting (source "override"). The config's feature contract becomes the process's active one."""
    from_env, texts = {}, {}
    for f in dataclasses.fields(PipelineConfig):
        text = os.environ.get(ENV_PREFIX + f.name.upper())
        if text is not None and f.type in PARSERS:
            try:
                from_env[f.name] = PARSERS[f.type](text)
            except ValueError as exc:
                raise SettingError(f.name, text, str(exc), "env") from None
            texts[f.name] = text
    try:
        config = PipelineConfig().replace(**{**project.current_settings(), **from_env})
    except SettingError as exc:
        raise SettingError(exc.field, texts.get(exc.field, exc.value), exc.expected, "env") from None
    config = config.replace(**overrides)
    features.activate(config.contract_path)
    return config
