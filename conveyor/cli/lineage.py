"""`conveyor lineage [--version V]`: what made a pushed model (metadata/lineage.py)."""
from __future__ import annotations

import argparse

from conveyor.cli import common


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("lineage", help="what made a pushed model")
    parser.add_argument("--version", help="pushed version (default: the one serving now)")
    common.add_home(parser, "output root the pipeline ran in")
    parser.set_defaults(func=lineage)


def lineage(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    with common.quiet(config, "lineage"):
        from metadata import lineage as lineages

        try:
            found = lineages.for_config(config, args.version)
        except lineages.LineageError as exc:
            raise common.CommandError(str(exc), common.EXIT_FAILED) from None
        print(lineages.format_lineage(found))
    return 0
