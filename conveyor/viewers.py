"""Interactive viewers on 127.0.0.1: TensorBoard on the latest Trainer logs (and the latest Tuner's
trials, for the HParams dashboard), JupyterLab on notebooks/."""
from __future__ import annotations

import os
import sys
import threading

from metadata import connection, runs
from pipeline.artifact_properties import TUNER_ID, TUNER_TENSORBOARD_DIR
from pipeline.configs import REPO_ROOT, PipelineConfig

HOST = "127.0.0.1"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def trainer_logdir(config: PipelineConfig) -> tuple[str, runs.NodeExecution]:
    """The TensorBoard logs of the newest trained model: the Trainer's `model_run` output,
    found through MLMD (a cached Trainer execution points at the model it reused)."""
    store = connection.open_metadata(config)
    trainer = runs.latest_execution_with(store, config.pipeline_name, "Trainer", "model_run")
    if trainer is None:
        raise LookupError(f"no Trainer has run yet in {config.home}: nothing to show in TensorBoard")
    return trainer.outputs["model_run"][0].uri, trainer


def tuner_logdir(config: PipelineConfig) -> tuple[str, runs.NodeExecution] | None:
    """The TensorBoard logs of the newest Tuner's trials (one folder per trial, with its
    hyperparameters: pipeline/components/tuner.py), None before the first tuning."""
    store = connection.open_metadata(config)
    tuner = runs.latest_execution_with(store, config.pipeline_name, TUNER_ID, "tuner_results")
    if tuner is None:
        return None
    return f"{tuner.outputs['tuner_results'][0].uri}/{TUNER_TENSORBOARD_DIR}", tuner


def serve_tensorboard(logdir: str, port: int, tuner_logdir: str | None = None) -> None:
    """Serve TensorBoard on 127.0.0.1 until interrupted; port 0 picks a free one. With
    `tuner_logdir`, the Trainer's runs are under trainer/ and the trials under tuner/."""
    from tensorboard import program

    logs = ["--logdir_spec", f"trainer:{logdir},tuner:{tuner_logdir}"] if tuner_logdir else ["--logdir", logdir]
    board = program.TensorBoard()
    board.configure(argv=[None, *logs, "--host", HOST, "--port", str(port), "--load_fast", "false"])
    url = board.launch()
    print(f"conveyor: TensorBoard at {url} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


def jupyter_command(config: PipelineConfig, port: int) -> tuple[list[str], dict[str, str]]:
    """argv and environment for JupyterLab on notebooks/, its kernels reading `config.home`."""
    argv = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={HOST}", f"--port={port}",
        f"--ServerApp.root_dir={NOTEBOOKS_DIR}",
    ]
    if os.geteuid() == 0:  # containers and CI machines run as root; Jupyter refuses without this
        argv.append("--allow-root")
    env = dict(os.environ)
    env["CONVEYOR_HOME"] = str(config.home.resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return argv, env
