"""`conveyor`: the command-line front door.

    conveyor run [options]              run the pipeline locally (see local_runner.py)
    conveyor ct tick                    one continuous-training decision (for cron / KFP recurring runs)
    conveyor ct watch [--interval S]    tick in a loop
    conveyor ct run --reason TEXT       retrain on demand
    conveyor ct status [--last N]       the last decisions and why
    conveyor ct demo [--home DIR]       the scripted CT scenario on generated spans
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
    parser.add_argument("--drift-policy", choices=configs.DRIFT_POLICIES, help="drift over threshold: block the run or warn")
    parser.add_argument("--beam-mode", choices=configs.BEAM_MODES)
    parser.add_argument("--beam-workers", type=int, help="processes for multi_processing (0 = one per core)")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component")
    parser.add_argument("--verbose", action="store_true", help="full TFX logs on the console")


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_run, spans

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
        drift_policy=args.drift_policy,
    )
    for span in spans.spans_to_run(config, args.latest_only):
        print(f"conveyor: running {config.pipeline_name} on span {span} (home: {config.home})", flush=True)
        summary = local_run.run(config.replace(span=span), verbose=args.verbose)
        print(local_run.format_summary(summary), flush=True)
        if not summary.ok or summary.missing_metrics:
            return 1
    return 0


def cmd_ct(args: argparse.Namespace) -> int:
    from ct import controller, decisions

    config = configs.load(home=args.home, spans_root=args.spans_root, drift_policy=args.drift_policy)
    if args.ct_command == "status":
        for decision in decisions.history(config)[-args.last:]:
            print(controller.format_decision(decision))
        return 0
    if args.ct_command == "watch":
        controller.watch(config, args.interval, args.max_ticks)
        return 0
    if args.ct_command == "demo":
        from ct import scenario

        home = args.home or configs.REPO_ROOT / "outputs" / "ct-demo"
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        demo = configs.load(home=home, spans_root=home / "spans", train_steps=100, eval_steps=5)
        scenario.run(demo, on_step=lambda step: print(f"\n[{step.name}]\n" + controller.format_decision(step.decision), flush=True))
        return 0
    decision = controller.tick(config, reason=args.reason if args.ct_command == "run" else None)
    print(controller.format_decision(decision))
    return 0 if decision.outcome in (None, decisions.OK) else 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline locally")
    _add_run_args(run_parser)
    run_parser.set_defaults(func=cmd_run)

    ct_parser = commands.add_parser("ct", help="continuous training controller")
    ct_commands = ct_parser.add_subparsers(dest="ct_command", required=True)
    for name, help_text in (
        ("tick", "evaluate every trigger once; launch at most one run"),
        ("watch", "tick in a loop"),
        ("run", "retrain on demand"),
        ("status", "show the last decisions"),
        ("demo", "run the scripted scenario in a scratch home"),
    ):
        sub = ct_commands.add_parser(name, help=help_text)
        sub.add_argument("--home", type=Path)
        sub.add_argument("--spans-root", type=Path)
        sub.add_argument("--drift-policy", choices=configs.DRIFT_POLICIES)
        sub.set_defaults(func=cmd_ct, reason=None)
        if name == "run":
            sub.add_argument("--reason", required=True, help="why, recorded in the decision log")
        if name == "watch":
            sub.add_argument("--interval", type=float, default=300.0, help="seconds between ticks")
            sub.add_argument("--max-ticks", type=int)
        if name == "status":
            sub.add_argument("--last", type=int, default=20)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
