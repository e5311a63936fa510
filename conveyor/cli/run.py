"""`conveyor run`: the pipeline on this machine, one pass per new span (conveyor/local/runner.py)."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from conveyor.cli import common
from pipeline import configs, settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run the pipeline locally")
    add_run_args(parser)
    parser.set_defaults(func=run)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spans-root", type=Path, help="folder of span-N/ data folders")
    common.add_home(parser, "output root: pipeline_root, metadata, serving_model, logs (default outputs/)")
    parser.add_argument("--train-steps", type=common.positive_int)
    parser.add_argument("--eval-steps", type=common.positive_int)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--span", type=common.non_negative_int, help="ingest exactly this span")
    which.add_argument(
        "--latest-only",
        action="store_true",
        help="ingest only the newest span, even if older spans were never ingested",
    )
    parser.add_argument("--window-spans", type=common.positive_int, help="train on the newest K validated spans")
    parser.add_argument("--drift-policy", choices=settings.DRIFT_POLICIES, help="drift over threshold: block the run or warn")
    parser.add_argument("--rollout", help="how a pushed version takes traffic: direct (default), shadow or canary:P (docs/serving.md)")
    add_beam_args(parser)
    parser.add_argument("--no-cache", action="store_true", help="re-run every component")
    parser.add_argument("--verbose", action="store_true", help="full TFX logs on the console")


def add_beam_args(parser: argparse.ArgumentParser) -> None:
    beam = parser.add_argument_group("Beam (every Beam-powered component)")
    beam.add_argument("--beam-mode", choices=settings.BEAM_MODES)
    beam.add_argument("--beam-workers", type=common.non_negative_int, help="processes for multi_processing (0 = one per core)")
    beam.add_argument("--gcp-project", help="dataflow (and Vertex AI): the Google Cloud project")
    beam.add_argument("--gcp-region", help="dataflow (and Vertex AI): the region")
    beam.add_argument("--beam-temp-location", help="dataflow: temp_location, gs://...")
    beam.add_argument("--beam-job-endpoint", help="flink / spark: the Beam job server, host:port")
    beam.add_argument("--beam-environment-type", help="flink / spark: DOCKER, PROCESS, EXTERNAL or LOOPBACK")
    beam.add_argument("--beam-environment-config", help="flink / spark: e.g. the SDK harness image")
    beam.add_argument("--beam-setup-file", help="setup.py remote workers install (default: this project's)")
    beam.add_argument("--beam-extra-arg", action="append", help="any other Beam pipeline option (repeatable)")


def beam_overrides(args: argparse.Namespace) -> dict:
    return dict(
        beam_mode=args.beam_mode,
        beam_workers=args.beam_workers,
        gcp_project=args.gcp_project,
        gcp_region=args.gcp_region,
        beam_temp_location=args.beam_temp_location,
        beam_job_endpoint=args.beam_job_endpoint,
        beam_environment_type=args.beam_environment_type,
        beam_environment_config=args.beam_environment_config,
        beam_setup_file=args.beam_setup_file,
        beam_extra_args=tuple(args.beam_extra_arg) if args.beam_extra_arg else None,
    )


def run(args: argparse.Namespace) -> int:
    config = common.load_config(
        spans_root=args.spans_root,
        home=common.local_home_arg(args),
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        span=args.span,
        window_spans=args.window_spans,
        enable_cache=False if args.no_cache else None,
        drift_policy=args.drift_policy,
        rollout=args.rollout,
        **beam_overrides(args),
    )
    check_spans_root(config, args)
    common.writable_home(config, args)
    started = time.monotonic()
    from pipeline import home_lock

    with common.quiet(config, "run"), home_lock.hold(config.home, "conveyor run"):
        from metadata import connection, spans

        where = connection.describe(connection.connection_config(config))
        try:
            todo = spans.spans_to_run(config, args.latest_only)
        except LookupError as exc:
            raise common.CommandError(str(exc)) from None
        for span in todo:
            common.say(f"conveyor: running {config.pipeline_name} on span {span} (home: {config.home}, metadata: {where})")
            code = run_once(config.replace(span=span), args.verbose, started)
            if code:
                return code
            started = time.monotonic()
    return 0


def run_once(config: configs.PipelineConfig, verbose: bool, started: float) -> int:
    """One pipeline pass with its summary printed: 0 if it pushed or rightly refused, else the exit code."""
    from conveyor.local import run_summary, runner

    summary = runner.run(config, verbose=verbose, started=started)
    common.say(run_summary.format_summary(summary))
    if summary.interrupted:
        raise KeyboardInterrupt
    return common.EXIT_FAILED if not summary.ok or summary.missing_metrics else 0


def check_spans_root(config: configs.PipelineConfig, args: argparse.Namespace) -> None:
    root = config.spans_root
    if args.spans_root:
        named = f"--spans-root {args.spans_root}"
    elif os.environ.get(configs.ENV_PREFIX + "SPANS_ROOT"):
        named = f"{configs.ENV_PREFIX}SPANS_ROOT={root}"
    else:
        named = f"the spans root {root}"
    if not root.exists():
        raise common.CommandError(f"{named}: no such folder (expected span-N/ folders of CSV files)")
    if not root.is_dir():
        raise common.CommandError(f"{named}: not a folder (expected span-N/ folders of CSV files)")
    if args.span is not None:
        from data import spans_io

        found = spans_io.existing_spans(root)
        if args.span not in found:
            there = f"spans there: {', '.join(map(str, found))}" if found else "no spans there"
            raise common.CommandError(f"--span {args.span}: no span-{args.span}/ with CSV files under {root} ({there})")
