"""`conveyor rollback [--to V | --clear]`: serve an earlier blessed version, without retraining."""
from __future__ import annotations

import argparse

from conveyor.cli import common


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("rollback", help="serve an earlier blessed version")
    common.add_home(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--to", help="version to serve (default: the newest eligible one before the serving version)")
    what.add_argument("--clear", action="store_true", help="remove the rollback pointer (also a corrupt one): the newest version serves")
    parser.add_argument("--wait", type=common.non_negative_float, default=60.0, help="seconds to wait for running servers to switch (default 60)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for running servers to switch")
    parser.set_defaults(func=rollback)


def rollback(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    with common.quiet(config, "rollback"):
        from pipeline import home_lock
        from serving import rollback as rollbacks
        from serving import status

        try:
            with home_lock.hold(config.home, "conveyor rollback"):
                result = rollbacks.clear(config) if args.clear else rollbacks.rollback(config, args.to)
        except (LookupError, ValueError, FileNotFoundError) as exc:
            raise common.CommandError(str(exc)) from None
        if result is None:
            print("conveyor rollback: no rollback pointer to clear")
            return 0
        if result.execution_id is None:
            print(f"removed the rollback pointer; version {result.to_version or 'none'} serves (unchanged)")
            return 0
        what = "cleared the rollback" if args.clear else "rolled back"
        print(f"{what}: {result.from_version or 'nothing'} -> {result.to_version} (MLMD execution {result.execution_id}); "
              "the next pushed version supersedes it")
        if args.no_wait:
            return 0
        switched, behind, waited = status.wait_until_serving(config.home, result.to_version, args.wait)
    if not switched and not behind:
        print(f"no server is running on {config.home}: the next `conveyor serve` serves {result.to_version}")
    for server in switched:
        print(f"server pid {server['pid']} ({server.get('url', '?')}) serves {result.to_version} after {waited:.1f} s")
    for server in behind:
        reason = server.get("error") or "still loading"
        common.warn(f"server pid {server['pid']} still serves {server.get('serving')} after {waited:.0f} s: {reason}")
    return common.EXIT_FAILED if behind else 0
