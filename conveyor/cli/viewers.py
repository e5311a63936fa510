"""`conveyor tensorboard | notebooks`: TensorBoard and JupyterLab on a home's runs (conveyor/viewers.py)."""
from __future__ import annotations

import argparse
import os

from conveyor.cli import common


def add_parser(commands: argparse._SubParsersAction) -> None:
    for name, func, port, what in (
        ("tensorboard", tensorboard, 6006, "TensorBoard on 127.0.0.1 for the newest Trainer's logs and Tuner's trials"),
        ("notebooks", notebooks, 8888, "JupyterLab on 127.0.0.1 for notebooks/"),
    ):
        viewer = commands.add_parser(name, help=what)
        common.add_home(viewer, "Conveyor home whose runs to read (default: outputs/)")
        viewer.add_argument("--port", type=common.port, default=port, help=f"port on 127.0.0.1 (default {port}; 0 = any free port)")
        viewer.set_defaults(func=func)


def tensorboard(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    with common.quiet(config, "tensorboard"):
        from conveyor import viewers

        try:
            logdir, trainer = viewers.trainer_logdir(config)
        except LookupError as exc:
            raise common.CommandError(str(exc), common.EXIT_FAILED) from None
        print(f"conveyor: Trainer execution {trainer.execution.id} ({trainer.state}), logs: {logdir}", flush=True)
        tuned = viewers.tuner_logdir(config)
        if tuned is not None:
            print(f"conveyor: Tuner execution {tuned[1].execution.id} ({tuned[1].state}), trials: {tuned[0]} (HParams dashboard)", flush=True)
        viewers.serve_tensorboard(logdir, args.port, tuned[0] if tuned else None)
    return 0


def notebooks(args: argparse.Namespace) -> int:
    """JupyterLab prints its own URL and logs: no quiet logging, and this process becomes it."""
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    from conveyor import viewers

    argv, env = viewers.jupyter_command(config, args.port)
    print(f"conveyor: JupyterLab on {viewers.NOTEBOOKS_DIR}, reading runs in {env['CONVEYOR_HOME']}", flush=True)
    os.execve(argv[0], argv, env)
    return common.EXIT_FAILED  # not reached: execve replaces this process
