"""Interactive viewers on 127.0.0.1: TensorBoard on the latest Trainer logs, JupyterLab on notebooks/."""
from __future__ import annotations

import os
import sys
import threading

from metadata import connection, runs
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


def serve_tensorboard(logdir: str, port: int) -> None:
    """Serve TensorBoard on 127.0.0.1 until interrupted; port 0 picks a free one."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", logdir, "--host", HOST, "--port", str(port), "--load_fast", "false"])
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
