"""`conveyor rollout status | promote | abort [--reason TEXT]`: the running shadow or canary rollout, by hand."""
from __future__ import annotations

import argparse
import time

from conveyor.cli import common

ACTIONS = {"promote": "promoted", "abort": "aborted"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("rollout", help="the shadow or canary rollout: status, promote, abort")
    parser.add_argument("action", choices=("status", *ACTIONS), help="status: where it stands and the guard's view; "
                        "promote: the candidate serves everyone; abort: stable serves everyone")
    parser.add_argument("--reason", help="why (recorded with the decision; default: operator)")
    common.add_home(parser)
    parser.set_defaults(func=rollout)


def rollout(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    if args.reason is not None and not args.reason.strip():
        raise common.CommandError("--reason needs a text (why the rollout is decided by hand)")
    if args.action == "status" and args.reason is not None:
        raise common.CommandError("--reason goes with promote or abort, not status")
    with common.quiet(config, "rollout"):
        from pipeline import home_lock
        from serving import rollout_control

        try:
            if args.action == "status":
                return _status(config, rollout_control.current(config))
            with home_lock.hold(config.home, f"conveyor rollout {args.action}"):
                done = rollout_control.decide(config, ACTIONS[args.action], f"operator: {args.reason or 'by hand'}")
        except (LookupError, ValueError) as exc:
            raise common.CommandError(str(exc)) from None
    recorded = f" (MLMD execution {done.rollout.execution_id})" if done.rollout.execution_id is not None else ""
    if not done.changed:
        print(f"conveyor rollout: already {done.rollout.decided}; nothing changed")
        return 0
    print(f"{rollout_control.describe(done.rollout)}{recorded}; "
          f"running servers follow within {config.poll_seconds:g} s")
    return 0


def _status(config, found) -> int:
    from ct import rollout_guard
    from serving import rollout_control

    print(rollout_control.describe(found))
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(found.started))
    print(f"started {started} UTC")
    if found.running:
        print(rollout_guard.describe(rollout_guard.check(config, found, time.time())))
    return 0
