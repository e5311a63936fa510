"""`conveyor`: the command-line front door.

    conveyor run [options]     run the pipeline locally (see local_runner.py)
    conveyor tensorboard       TensorBoard on 127.0.0.1 for the newest trained model's logs
    conveyor notebooks         JupyterLab on 127.0.0.1 for notebooks/, reading the same home
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline import configs


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spans-root", type=Path, help="folder of span-N/ data folders")
    parser.add_argument("--home", type=Path, help="output root: pipeline_root, metadata, serving_model, logs")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--span", type=int, help="ingest exactly this span")
    which.add_argument(
        "--latest-only",
        action="store_true",
        help="ingest only the newest span, even if older spans were never ingested",
    )
    parser.add_argument("--window-spans", type=int, help="train on the newest K validated spans")
    parser.add_argument("--beam-mode", choices=configs.BEAM_MODES)
    parser.add_argument("--beam-workers", type=int, help="processes for multi_processing (0 = one per core)")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component")
    parser.add_argument("--verbose", action="store_true", help="full TFX logs on the console")


def spans_to_run(config: configs.PipelineConfig, latest_only: bool) -> list[int | None]:
    """Spans to ingest, oldest first: each span on disk newer than the newest one ingested.

    [None] (the newest span) when nothing is pending, so a re-run re-checks the newest span.
    """
    from data import spans_io
    from pipeline import metadata

    on_disk = spans_io.existing_spans(config.spans_root)
    if not on_disk:
        raise SystemExit(f"no spans under {config.spans_root} (expected span-N/{spans_io.SPAN_FILE})")
    if config.span is not None:
        return [config.span]
    if latest_only or not config.metadata_path.exists():
        ingested: set[int] = set()
    else:
        ingested = metadata.ingested_spans(metadata.open_store(metadata.sqlite_config(config.metadata_path)), config.pipeline_name)
    newest = max(ingested, default=0)
    pending = [s for s in on_disk if s > newest]
    if latest_only or not pending:
        return [None]
    return pending


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_run

    config = configs.load(
        spans_root=args.spans_root,
        home=args.home,
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        span=args.span,
        window_spans=args.window_spans,
        beam_mode=args.beam_mode,
        beam_workers=args.beam_workers,
        enable_cache=False if args.no_cache else None,
    )
    spans = spans_to_run(config, args.latest_only)
    for span in spans:
        label = f"span {span}" if span is not None else "newest span"
        print(f"conveyor: running {config.pipeline_name} on {label} (home: {config.home})", flush=True)
        summary = local_run.run(config.replace(span=span), verbose=args.verbose)
        print(local_run.format_summary(summary), flush=True)
        if not summary.ok or summary.missing_metrics:
            return 1
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from pipeline import viewers

    config = configs.load(home=args.home)
    logdir, trainer = viewers.trainer_logdir(config)
    print(f"conveyor: Trainer execution {trainer.execution.id} ({trainer.state}), logs: {logdir}", flush=True)
    viewers.serve_tensorboard(logdir, args.port)
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from pipeline import viewers

    config = configs.load(home=args.home)
    argv, env = viewers.jupyter_command(config, args.port)
    print(f"conveyor: JupyterLab on {viewers.NOTEBOOKS_DIR}, reading runs in {env['CONVEYOR_HOME']}", flush=True)
    os.execve(argv[0], argv, env)
    return 1  # not reached: execve replaces this process


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline locally")
    _add_run_args(run_parser)
    run_parser.set_defaults(func=cmd_run)
    for name, func, port, what in (
        ("tensorboard", cmd_tensorboard, 6006, "TensorBoard on 127.0.0.1 for the newest Trainer's logs"),
        ("notebooks", cmd_notebooks, 8888, "JupyterLab on 127.0.0.1 for notebooks/"),
    ):
        viewer = commands.add_parser(name, help=what)
        viewer.add_argument("--home", type=Path, help="Conveyor home whose runs to read (default: outputs/)")
        viewer.add_argument("--port", type=int, default=port, help=f"port on 127.0.0.1 (default {port}; 0 = any free port)")
        viewer.set_defaults(func=func)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
