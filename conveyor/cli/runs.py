"""`conveyor runs [--last N]` and `conveyor runs compare RUN_A RUN_B [--html FILE]`: the pipeline
runs of a home, and two of them side by side (conveyor/run_comparison.py, metadata/run_records.py).

Read-only: ML Metadata and the Evaluator's records only, no TensorFlow, TFMA or Beam
(tests/test_read_only_commands.py), nothing created but the --html file asked for.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from conveyor.cli import common


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("runs", help="the pipeline runs: trigger, spans, hyperparameters, metrics, push")
    common.add_home(parser)
    parser.add_argument("--last", type=common.positive_int, help="only the newest N runs")
    parser.set_defaults(func=runs, command="conveyor runs")
    actions = parser.add_subparsers(dest="runs_command", metavar="{compare}")
    compare = actions.add_parser("compare", help="two runs side by side")
    compare.add_argument("run_a", metavar="RUN_A", help="a run's number in `conveyor runs` or its run id")
    compare.add_argument("run_b", metavar="RUN_B", help="the other run (the change shown is B - A)")
    # Either side of `compare` may name the home; SUPPRESS keeps the subcommand's default from
    # overwriting a --home given before it.
    compare.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="the home folder (default outputs/, or $CONVEYOR_HOME)")
    compare.add_argument("--html", type=Path, metavar="FILE", help="also write the comparison as an HTML page to FILE")
    compare.set_defaults(func=compare_runs)


def _store(args: argparse.Namespace) -> tuple[Any, Any]:
    """The home's config and its metadata store; a home without ML Metadata is named and refused."""
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    from metadata import connection

    if not connection.store_exists(config):
        raise common.CommandError(f"no ML Metadata at {config.metadata_path}: no run of this home was recorded", common.EXIT_FAILED)
    return config, connection.open_store(connection.connection_config(config))


def runs(args: argparse.Namespace) -> int:
    config, store = _store(args)
    with common.quiet(config, "runs"):
        from conveyor import run_comparison
        from metadata import run_records

        records = run_records.all_runs(config, store)
        if not records:
            print(f"no runs of {config.pipeline_name} recorded in {config.home}")
            return 0
        print(run_comparison.table(records, args.last))
    return 0


def compare_runs(args: argparse.Namespace) -> int:
    html = args.html
    if html is not None and (html.is_dir() or not html.parent.is_dir()):
        raise common.CommandError(f"--html {html}: expected a file in an existing folder")
    config, store = _store(args)
    with common.quiet(config, "runs compare"):
        from conveyor import run_comparison
        from metadata import run_records

        try:
            a, b = (run_records.find(config, store, name) for name in (args.run_a, args.run_b))
        except run_records.RunNotFound as exc:
            raise common.CommandError(str(exc)) from None
        found = run_comparison.compare(run_records.detail(store, a), run_records.detail(store, b))
        print(run_comparison.format_comparison(found))
        if html is not None:
            html.write_text(run_comparison.render_html(found))
            print(f"\nwritten: {html}")
    return 0
