"""`conveyor schema diff|accept|reject|log`: a legitimate schema change, reviewed and recorded.

    diff --span N                 the smallest schema change that would accept blocked span N
    accept --span N [--reason T]  record it as the home's next schema version (the next run imports it)
    reject --span N [--reason T]  record the refusal (the span keeps blocking)
    log                           the versions (span, reason, who, when) and the refusals

The review is conveyor/schema_review.py, the versions schema/versions.py; accept and reject hold
the home's writer lock like every writing command.
"""
from __future__ import annotations

import argparse
import getpass
import os

from conveyor.cli import common

ACTIONS = ("diff", "accept", "reject", "log")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("schema", help="review, accept or reject the schema change a blocked span needs")
    actions = parser.add_subparsers(dest="schema_command", required=True, metavar="{" + ",".join(ACTIONS) + "}")
    helps = {
        "diff": "the smallest schema change that would accept blocked span N",
        "accept": "record that change as the home's next schema version",
        "reject": "record that the change is refused: the span keeps blocking",
        "log": "the schema versions (span, reason, who, when) and the refusals",
    }
    for name in ACTIONS:
        sub = actions.add_parser(name, help=helps[name])
        common.add_home(sub)
        if name != "log":
            sub.add_argument("--span", type=common.non_negative_int, required=True, help="the blocked upstream span")
        if name in ("accept", "reject"):
            sub.add_argument("--reason", default="", help="why, recorded with the decision")
            sub.add_argument("--by", default=None, help="who decides (default $USER)")
        sub.set_defaults(func=schema)


def _who(args: argparse.Namespace) -> str:
    if args.by is not None:
        if not args.by.strip():
            raise common.CommandError("--by '': expected a name")
        return args.by.strip()
    return os.environ.get("USER") or getpass.getuser()


def schema(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    by = _who(args) if args.schema_command in ("accept", "reject") else ""
    with common.quiet(config, f"schema {args.schema_command}"):
        from conveyor import schema_review
        from pipeline import home_lock
        from schema import versions

        try:
            if args.schema_command == "log":
                print("\n".join(log_lines(config.home, config.schema_path)))
                return 0
            if args.schema_command == "diff":
                print("\n".join(schema_review.review(config, args.span).lines()))
                return 0
            schema_review.blocked_gate(config, args.span)  # bad input is refused before the lock file is made
            with home_lock.hold(config.home, f"conveyor schema {args.schema_command}"):
                found = schema_review.review(config, args.span)
                if found.not_schema:
                    raise common.CommandError(
                        f"--span {args.span}: also blocked by what no schema change fixes ({'; '.join(found.not_schema)}): nothing recorded"
                    )
                changes = [c.as_dict() for c in found.changes]
                if args.schema_command == "reject":
                    versions.reject(config.home, args.span, found.version.version, changes, args.reason, by)
                    print(f"rejected the schema change span {args.span} needs ({len(changes)} change(s)) by {by}: "
                          f"{args.reason!r}; schema {found.version.describe()} stays, span {args.span} keeps blocking")
                    return 0
                made = versions.accept(config.home, config.schema_path, args.span, found.schema_text(), changes, args.reason, by)
        except (schema_review.ReviewError, versions.VersionError) as exc:
            raise common.CommandError(str(exc)) from None
        print(f"accepted: schema {made.describe()}, parent version {made.parent}")
        print("\n".join(c.line() for c in found.changes))
        print(f"  file {made.file}")
        print(f"the next run imports it and takes span {args.span} again: conveyor run (or conveyor ct tick)")
    return 0


def log_lines(home, curated_file) -> list[str]:
    """Every version with its span, reason, who and when, then the refusals."""
    from schema import changes as changes_lib
    from schema import versions

    out = []
    for version in versions.history(home, curated_file):
        out.append(f"version {version.version}: " + (f"{version.reason} ({version.file})" if version.span is None else
                   f"span {version.span}, by {version.by} at {version.at}, parent {version.parent}: {version.reason!r}"))
        out += [changes_lib.Change.from_dict(c).line() for c in version.changes]
    for r in versions.rejections(home):
        out.append(f"rejected: span {r.span} against version {r.version}, by {r.by} at {r.at}: {r.reason!r}")
        out += [changes_lib.Change.from_dict(c).line() for c in r.changes]
    return out
