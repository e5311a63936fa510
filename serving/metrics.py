"""The server's Prometheus metrics (`GET /metrics`), summed over its worker processes.

`conveyor serve` runs its workers with PROMETHEUS_MULTIPROC_DIR set (serving/supervisor.py), so
prometheus_client keeps each process's values in a memory-mapped file there and any worker's
/metrics reports the sum over all of them; gauges marked "live" count only running workers.
A server built in-process (tests, serving.server.build) reports its own values.

    conveyor_http_requests_total{route, code, version}     requests answered (version: the model's, or "")
    conveyor_http_request_duration_seconds{route}          first byte of the request -> response written
    conveyor_http_connections                              open connections (live)
    conveyor_http_events_total{event}                      timeouts, refusals, accept errors, evictions, disconnects
    conveyor_grpc_requests_total{method, code, version}    gRPC calls answered (code: the gRPC status)
    conveyor_grpc_request_duration_seconds{method}         gRPC call handled -> answered
    conveyor_predictions_total{version, predicted_class}   instances predicted
    conveyor_prediction_probability{version}               distribution of the predicted probability (multi-class: the predicted class's)
    conveyor_model_batch_instances                         instances per model call (request batching)
    conveyor_rollout_predictions_total{label, version, outcome}  during a rollout: instances by route (stable,
                                                           canary, shadow) and outcome (ok, error)
    conveyor_model_call_seconds{label}                     during a rollout: the model call of each route
    conveyor_out_of_domain_values_total{feature}           string values outside the schema domain (predicted, flagged)
    conveyor_model_loads_total{version, outcome}           loads: ok / failed
    conveyor_model_load_seconds                            time to load a version
    conveyor_serving_version{pid}                          the version each worker serves (0 = none; live)
    conveyor_model_watch_errors_total{kind}                errors of the version watcher (it keeps running)
    conveyor_request_log_commit_seconds                    request-log lag: prediction computed -> its record on disk
    conveyor_request_log_pending_records                   predictions computed, not yet on disk (live)
    conveyor_request_log_errors_total                      failed commits (those requests were answered 503)
    conveyor_request_log_bytes_total                       bytes appended
"""
from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_registry = CollectorRegistry(auto_describe=True)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("conveyor_http_requests", "HTTP requests answered", ["route", "code", "version"], registry=_registry)
LATENCY = Histogram(
    "conveyor_http_request_duration_seconds", "From the request's first byte to the response written",
    ["route"], buckets=_LATENCY_BUCKETS, registry=_registry,
)
CONNECTIONS = Gauge("conveyor_http_connections", "Open connections", multiprocess_mode="livesum", registry=_registry)
HTTP_EVENTS = Counter("conveyor_http_events", "Connection events: timeouts, refusals, accept errors, evictions", ["event"], registry=_registry)
GRPC_REQUESTS = Counter("conveyor_grpc_requests", "gRPC calls answered", ["method", "code", "version"], registry=_registry)
GRPC_LATENCY = Histogram(
    "conveyor_grpc_request_duration_seconds", "From the call handled to its answer", ["method"],
    buckets=_LATENCY_BUCKETS, registry=_registry,
)
PREDICTIONS = Counter("conveyor_predictions", "Instances predicted", ["version", "predicted_class"], registry=_registry)
PROBABILITY = Histogram(
    "conveyor_prediction_probability", "Predicted probability", ["version"],
    buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)), registry=_registry,
)
BATCH = Histogram(
    "conveyor_model_batch_instances", "Instances per model call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=_registry,
)
GATHERS = Counter(
    "conveyor_batch_gathers", "How a batch of small requests started: at once (no client about to send), "
    "when every returning client had sent (all_arrived), at max_batch_instances (full), or when "
    "batch_gather_seconds ran out (window_expired)",
    ["outcome"], registry=_registry,
)
ROLLOUT = Counter(
    "conveyor_rollout_predictions", "Instances answered during a rollout, by route label (stable, canary, shadow)",
    ["label", "version", "outcome"], registry=_registry,
)
MODEL_CALL = Histogram(
    "conveyor_model_call_seconds", "The model call of each rollout route", ["label"], buckets=_LATENCY_BUCKETS,
    registry=_registry,
)
OUT_OF_DOMAIN = Counter("conveyor_out_of_domain_values", "String values outside the schema domain", ["feature"], registry=_registry)
LOADS = Counter("conveyor_model_loads", "Model version loads", ["version", "outcome"], registry=_registry)
LOAD_SECONDS = Histogram(
    "conveyor_model_load_seconds", "Time to load a model version", buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
    registry=_registry,
)
SERVING_VERSION = Gauge(
    "conveyor_serving_version", "The version this worker serves (0 = none)", multiprocess_mode="liveall", registry=_registry
)
WATCH_ERRORS = Counter("conveyor_model_watch_errors", "Errors of the version watcher", ["kind"], registry=_registry)
LOG_COMMIT = Histogram(
    "conveyor_request_log_commit_seconds", "From a prediction to its record on disk", buckets=_LATENCY_BUCKETS,
    registry=_registry,
)
LOG_PENDING = Gauge(
    "conveyor_request_log_pending_records", "Predictions not yet on disk", multiprocess_mode="livesum", registry=_registry
)
LOG_ERRORS = Counter("conveyor_request_log_errors", "Failed request-log commits", registry=_registry)
LOG_BYTES = Counter("conveyor_request_log_bytes", "Bytes appended to the request log", registry=_registry)


class Children:
    """metric.labels(...) cached per label values (labels() costs more than the increment)."""

    def __init__(self, metric: Any):
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


requests = Children(REQUESTS)
latency = Children(LATENCY)
http_events = Children(HTTP_EVENTS)
predictions = Children(PREDICTIONS)
probability = Children(PROBABILITY)
out_of_domain = Children(OUT_OF_DOMAIN)
gathers = Children(GATHERS)
grpc_requests = Children(GRPC_REQUESTS)
grpc_latency = Children(GRPC_LATENCY)
rollout = Children(ROLLOUT)
model_call = Children(MODEL_CALL)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric (all workers' when multiprocess), and its content type."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(_registry), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drop the live gauges of a worker that exited (called by the supervisor)."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
