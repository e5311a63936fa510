"""`conveyor tune`: the pipeline with TFX's Tuner on the current window (models/tuning.py).

The run ingests the newest span already ingested (or `--span N`), so its window is the one the
serving model was trained on; the Tuner searches the hyperparameters there, the Trainer trains with
the best, and the model is evaluated and pushed like any other. Later runs train with this choice
until the next tuning (docs/pipeline.md#tuning).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from conveyor.cli import common, run
from pipeline import settings

FLAGS = {"tune_objective": "--objective", "tune_max_trials": "--max-trials", "tune_max_seconds": "--max-seconds"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tune", help="search the hyperparameters on the current window, train and push with the best")
    parser.add_argument("--spans-root", type=Path, help="folder of span-N/ data folders")
    common.add_home(parser, "output root: pipeline_root, metadata, serving_model, logs (default outputs/)")
    parser.add_argument("--span", type=common.non_negative_int, help="tune on the window of this span (default: the newest span ingested)")
    parser.add_argument("--objective", choices=settings.TUNE_OBJECTIVES, help="validation metric to maximise (default auc)")
    parser.add_argument("--max-trials", type=common.positive_int, help="trials at most, the first with the default hyperparameters (default 10)")
    parser.add_argument("--max-seconds", type=common.positive_float, help="start no trial after this many seconds (default 180)")
    parser.add_argument("--train-steps", type=common.positive_int, help="steps of each trial and of the Trainer")
    parser.add_argument("--eval-steps", type=common.positive_int)
    parser.add_argument("--window-spans", type=common.positive_int, help="tune and train on the newest K validated spans")
    run.add_beam_args(parser)
    parser.add_argument("--verbose", action="store_true", help="full TFX logs on the console")
    parser.set_defaults(func=tune)


def tune(args: argparse.Namespace) -> int:
    config = common.load_config(
        FLAGS,
        spans_root=args.spans_root,
        home=common.local_home_arg(args),
        span=args.span,
        tune=True,
        tune_objective=args.objective,
        tune_max_trials=args.max_trials,
        tune_max_seconds=args.max_seconds,
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        window_spans=args.window_spans,
        **run.beam_overrides(args),
    )
    run.check_spans_root(config, args)
    started = time.monotonic()
    from metadata import connection

    nothing = f"{common.home_source(args)}: no span ingested yet, so no window to tune on (`conveyor run` first, or --span N)"
    if config.span is None and not connection.store_exists(config) and not config.pipeline_root.exists():
        raise common.CommandError(nothing)  # before the home is created: a tune with nothing to tune creates nothing
    common.writable_home(config, args)
    from pipeline import home_lock

    with common.quiet(config, "tune"), home_lock.hold(config.home, "conveyor tune"):
        from metadata import spans

        span = config.span if config.span is not None else max(spans.ingested(config), default=None)
        if span is None:
            raise common.CommandError(nothing)
        where = connection.describe(connection.connection_config(config))
        common.say(
            f"conveyor: tuning {config.pipeline_name} on the window of span {span}: at most {config.tune_max_trials} trials"
            f" of {config.train_steps} steps, none started after {config.tune_max_seconds:g} s, maximising val_{config.tune_objective}"
            f" (home: {config.home}, metadata: {where})"
        )
        return run.run_once(config.replace(span=span), args.verbose, started)
