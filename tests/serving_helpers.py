"""A writable copy of the small_run home for serving and monitoring tests, fake pushed versions,
and `conveyor serve` as a real process."""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pipeline import configs, versions

CONVEYOR = Path(sys.executable).parent / "conveyor"  # the installed launcher, as the README runs it


def copy_home(small_run, dest: Path, **overrides) -> configs.PipelineConfig:
    """A writable home with small_run's pushed versions and MLMD (artifacts stay where they are)."""
    source, _ = small_run
    dest.mkdir(parents=True)
    shutil.copytree(source.serving_root, dest / source.serving_root.name)
    shutil.copy2(source.metadata_path, dest / source.metadata_path.name)
    return source.replace(home=dest, **overrides)


def metric(scraped: str, sample: str, **labels: str) -> float:
    """The sum of the `sample` values in a /metrics text whose labels include `labels` (0 if none)."""
    return sum(
        found.value
        for family in text_string_to_metric_families(scraped)
        for found in family.samples
        if found.name == sample and all(found.labels.get(key) == value for key, value in labels.items())
    )


def wait_for(condition, timeout: float = 30.0, what: str = "condition", every: float = 0.05):
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Serve:
    """`conveyor serve --home HOME --port 0` as a subprocess: `with Serve(home, env) as s: s.url`.

    `env` holds CONVEYOR_* settings; stderr goes to a file (`s.stderr()`); `preexec` runs in the
    child before exec (e.g. a lower descriptor limit). Stopped with SIGTERM on exit.
    """

    def __init__(self, home: Path, env: dict[str, str] | None = None, workers: int = 1, args: tuple[str, ...] = (),
                 preexec=None, start_timeout: float = 240.0):
        self.home, self.workers, self.args = Path(home), workers, args
        self.env = {**os.environ, "CONVEYOR_POLL_SECONDS": "0.2", **(env or {})}
        self.preexec, self.start_timeout = preexec, start_timeout
        self.stderr_path = self.home.parent / f"serve-{self.home.name}-{time.monotonic_ns()}.err"
        self.process: subprocess.Popen | None = None
        self.first_line = ""
        self.url = ""
        self.exit_code: int | None = None

    def __enter__(self) -> "Serve":
        self.start()
        return self

    def start(self) -> None:
        argv = [str(CONVEYOR), "serve", "--home", str(self.home), "--port", "0", "--workers", str(self.workers), *self.args]
        self._stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=self.env,
                                        preexec_fn=self.preexec)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout], daemon=True).start()
        try:
            self.first_line = lines.get(timeout=self.start_timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"conveyor serve printed nothing within {self.start_timeout} s: {self.stderr()[-2000:]}") from None
        assert " at http://" in self.first_line, (self.first_line, self.stderr()[-2000:])
        self.url = self.first_line.split(" at ")[1].split("/v1/")[0]

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text()

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is not None and self.exit_code is None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.exit_code = self.process.wait()
            self._stderr.close()
        return self.exit_code

    def __exit__(self, *exc: object) -> None:
        self.stop()


def publish_fake(serving_root: Path, version: str, record: dict | None = None) -> Path:
    """Push a placeholder "model" (saved_model.pb and a variables file, not loadable) through the
    real two steps, stage then publish: for tests of the serving-root rule."""
    model = Path(serving_root).parent / f".fake-model-{version}"
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / versions.READY_FILE).write_bytes(b"graph")
    versions.stage(str(model), serving_root, version)
    shutil.rmtree(model)
    return Path(versions.publish(serving_root, version, record or {}))


def publish_inverted(serving_root: Path, version: str, new_version: str, rollout: str = "direct") -> Path:
    """Publish a deliberately worse copy of published `version` as `new_version`: a SavedModel whose
    serving_default calls the original's and answers the other class (probability 1 - p), so it is
    wrong wherever the original is right. A real SavedModel the server loads like any other."""
    import tensorflow as tf

    from models.features import CLASS_KEY, PROBABILITY_KEY

    source = Path(serving_root) / version
    loaded = tf.saved_model.load(str(source))
    signature = loaded.signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    module = tf.Module()
    module.inner = loaded

    @tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=name)])
    def serve(examples):
        out = signature(**{name: examples})
        return {PROBABILITY_KEY: 1.0 - out[PROBABILITY_KEY], CLASS_KEY: 1 - out[CLASS_KEY]}

    built = Path(serving_root).parent / f".inverted-{new_version}"
    tf.saved_model.save(module, str(built), signatures={"serving_default": serve.get_concrete_function()})
    if (source / "assets.extra").is_dir():  # the warmup requests, which folding probes with
        shutil.copytree(source / "assets.extra", built / "assets.extra")
    versions.stage(str(built), serving_root, new_version)
    shutil.rmtree(built)
    record = {**(versions.read_record(serving_root, version) or {}), "inverted_copy_of": version}
    return Path(versions.publish(serving_root, new_version, record, rollout))
