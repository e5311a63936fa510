"""`conveyor`: the command-line front door. The parser, and one way every command ends.

    conveyor init DIR --from-csv FILE --label COLUMN
                                        a new pipeline project from a CSV file (docs/your-data.md);
                                        inside it, or with --project DIR, every command uses it
    conveyor run [options]              run the pipeline locally (see local_runner.py)
    conveyor tune [options]             search the hyperparameters on the current window (TFX Tuner),
                                        train and push with the best; later runs train with them
    conveyor ct tick                    one continuous-training decision (for cron / KFP recurring runs);
                                        --target kfp|vertex --home gs://...: launch on a cluster
    conveyor ct watch [--interval S]    tick in a loop (on a cluster too, with tick's --target options)
    conveyor ct run --reason TEXT       retrain on demand
    conveyor ct status [--last N]       the last decisions and why
    conveyor ct demo [--home DIR]       the closed loop played for real: server, traffic, late labels, ticks
    conveyor serve [options]            serve the pushed models over TF Serving's REST API (serving/)
    conveyor models [--clean]           list pushed versions, marking the one serving now (--clean:
                                        remove incomplete and unrecorded version folders)
    conveyor rollback [--to V]          serve an earlier blessed version, without retraining
    conveyor rollout status|promote|abort [--reason TEXT]
                                        the shadow or canary rollout of a version pushed with --rollout
    conveyor monitor [options]          statistics, skew, drift and live metrics of the request log
    conveyor tensorboard                TensorBoard on 127.0.0.1 for the newest trained model's logs
    conveyor notebooks                  JupyterLab on 127.0.0.1 for notebooks/, reading the same home
    conveyor lineage [--version V]      what made a pushed model (default: the one serving now)
    conveyor runs [--last N]            the pipeline runs: trigger, spans, hyperparameters, metrics, push
    conveyor runs compare RUN_A RUN_B   two runs side by side (--html FILE: as a page)
    conveyor card [--version V]         where a pushed version's model card is, and a summary of it
    conveyor schema diff --span N       the smallest schema change that would accept blocked span N;
                                        accept / reject --span N [--reason T] record it as the next
                                        schema version (the next run imports it) or refuse it; log: the versions
    conveyor kubeflow [options]         compile for Kubeflow Pipelines v2 / Vertex AI (see kubeflow_runner.py);
                                        --check-locally executes the compiled spec here first

Exit codes: 0 done; 1 the command ran and failed (e.g. a run whose model was not pushed); 2 bad
input (a flag, variable, path or home), one line naming it; 75 the home is busy (another writer);
130 interrupted; 141 the reader of the output went away.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import Any, Sequence

import speedups
from conveyor.cli import card, common, ct, init, kubeflow, lineage, models, monitor, rollback, rollout, run, runs, schema, serve, tune, viewers
from pipeline.home_lock import HomeBusy
from speedups import switch

# One module per command group, each with add_parser(commands); the order is the help's.
GROUPS = (init, run, tune, ct, serve, models, rollback, rollout, monitor, viewers, lineage, card, runs, schema, kubeflow)


class ParseError(common.CommandError):
    def __init__(self, prog: str, message: str):
        super().__init__(f"{message} (see `{prog} --help`)")
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse with flags matched whole (no prefixes), an unknown flag named with the nearest
    known one, and every error one line (ParseError) instead of usage text and exit."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]  # one signature for argparse's overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace or argparse.Namespace())
        if not self._subparsers:  # a command's own parser: whatever it did not take is an error here
            if extras:
                self.error(self._unknown(extras))
            parsed.command = self.prog
        return parsed, extras

    def _unknown(self, extras: list[str]) -> str:
        first = extras[0]
        if not first.startswith("-"):
            return f"unexpected argument {first!r}"
        flag = first.split("=", 1)[0]
        known = [option for action in self._actions for option in action.option_strings if option.startswith("--")]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        return f"unknown flag {flag}" + (f" (did you mean {close[0]}?)" if close else "")

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(3))
            close = difflib.get_close_matches(choice.group(2), options, n=1, cutoff=0.5)
            message = f"argument {choice.group(1)}: {choice.group(2)!r} is not one of {', '.join(options)}" + (
                f" (did you mean {close[0]}?)" if close else ""
            )
        raise ParseError(self.prog, message)


def build_parser() -> Parser:
    """The `conveyor` command line (what deploy/*.yaml and the docs call)."""
    parser = Parser(prog="conveyor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    prog = "conveyor"
    try:
        switch.enabled()  # a bad CONVEYOR_SPEEDUPS is bad input like any other setting
        speedups.for_commands()
        args = build_parser().parse_args(argv)
        prog = args.command
        common.use_project(args)
        return args.func(args)
    except ParseError as exc:
        return _fail(exc.prog, str(exc), exc.code)
    except common.CommandError as exc:
        return _fail(prog, str(exc), exc.code)
    except ValueError as exc:  # a setting read before the parser (CONVEYOR_SPEEDUPS)
        return _fail(prog, str(exc), common.EXIT_USAGE)
    except HomeBusy as exc:  # another process writes this home: try again later
        return _fail(prog, str(exc), common.EXIT_BUSY)
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", common.EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader (`| head`) is gone: say nothing more, and keep the exit's flush from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return common.EXIT_BROKEN_PIPE
    except Exception as exc:  # a fault of ours, outside any command's log: the traceback goes to a file
        return _fail(prog, f"{type(exc).__name__}: {exc} (traceback in {_traceback_file()})", common.EXIT_FAILED)


def _traceback_file() -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="conveyor-error-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return path


def _fail(prog: str, message: str, code: int) -> int:
    try:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass
    return code
