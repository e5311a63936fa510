"""`conveyor monitor`: statistics, skew, drift and live metrics of the request log (monitoring/)."""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from conveyor.cli import common


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("monitor", help="monitor the request log: statistics, skew, drift, live metrics")
    common.add_home(parser)
    parser.add_argument("--end", type=_iso_time, help="end of the window, ISO time (default now; UTC if no zone)")
    parser.add_argument("--hours", type=common.positive_float, help="window length (default monitor_window_hours)")
    parser.add_argument("--request-log", type=Path, help="request log root (default HOME/request_log)")
    parser.add_argument("--labels", type=Path, help="labels folder (default HOME/labels)")
    parser.add_argument("--out", type=Path, help="where result.json and report.html go (default HOME/monitoring/<window>)")
    parser.set_defaults(func=monitor)


def monitor(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    for flag, path in (("--request-log", args.request_log), ("--labels", args.labels)):
        if path is not None and not path.is_dir():
            raise common.CommandError(f"{flag} {path}: no such folder")
    with common.quiet(config, "monitor"):
        from monitoring import job

        result = job.run(config, end=args.end, hours=args.hours, log_root=args.request_log, labels_root=args.labels, out_dir=args.out)
        print(job.format_result(result))
    return result.exit_code


def _iso_time(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO time such as 2026-12-07T08:00, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
