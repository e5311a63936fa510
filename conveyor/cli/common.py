"""What every command shares: one error style, exit codes, the home, settings from flags and variables.

A command that cannot do what it was asked raises `CommandError` with one line naming the flag,
variable or path and what was expected; `dispatch.main` prints it as `conveyor <command>: <line>`
and exits with its code. Nothing is created before the input has been checked: read-only commands
ask for an existing home (`existing_home`), writing ones create it only once the settings are valid
(`writable_home`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from data import spans_io
from pipeline import configs, project
from pipeline.home_lock import HomeBusy

EXIT_FAILED = 1  # the command ran and failed (a run not blessed, a rollback a server did not take)
EXIT_USAGE = 2  # bad input: a flag, variable, path or home that is not what was expected
EXIT_BUSY = 75  # EX_TEMPFAIL: another process writes this home (pipeline/home_lock.py)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # the reader of our output went away (128 + SIGPIPE)

HOME_VARIABLE = configs.ENV_PREFIX + "HOME"
# What a folder holds once any command has written it as a home; one of them makes it a home.
HOME_MARKERS = ("metadata.sqlite", "serving_model", "pipeline_root", "ct", "request_log", "labels", "logs")


class CommandError(Exception):
    """Bad input or a refused action: one line for the console, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def add_home(parser: argparse.ArgumentParser, what: str = "the home folder (default outputs/, or $CONVEYOR_HOME)") -> None:
    parser.add_argument("--home", type=home_path, help=what)
    add_project(parser)


def add_project(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=Path, help=f"a project folder `conveyor init` made (default: ${project.VARIABLE}, "
                        f"or the current folder if it holds a {project.MARKER})")


def use_project(args: argparse.Namespace) -> None:
    """--project DIR: the project every setting of this command and its child processes reads
    (pipeline/project.py), checked before anything else."""
    if getattr(args, "project", None) is None:
        return
    try:
        project.read(args.project, f"--project {args.project}")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    os.environ[project.VARIABLE] = str(args.project.resolve())


def home_path(text: str) -> Path | str:
    """--home as given: a local folder as a Path, a URI kept as text (a Path folds gs:// into gs:/,
    which local_home_arg could no longer tell from a local folder)."""
    return text if spans_io.is_uri(text) else Path(text)


def _number(parse: Callable[[str], float], kind: str, low: float, inclusive: bool) -> Callable[[str], Any]:
    """An argparse type: `kind` ("an integer", "a number") at least (or above) `low`, named in its error."""
    bound = f"{'>=' if inclusive else '>'} {low:g}"

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"expected {kind} {bound}, got {text!r}")
        return value

    return convert


positive_int = _number(int, "an integer", 1, inclusive=True)
non_negative_int = _number(int, "an integer", 0, inclusive=True)
positive_float = _number(float, "a number", 0, inclusive=False)
non_negative_float = _number(float, "a number", 0, inclusive=True)


def port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def load_config(flags: dict[str, str] | None = None, **overrides: Any) -> configs.PipelineConfig:
    """configs.load; a bad setting is a CommandError naming its flag (`flags` maps field -> flag
    where the flag is not `--field-name`) or its CONVEYOR_* variable."""
    try:
        return configs.load(**overrides)
    except configs.SettingError as exc:
        if exc.source == "override":
            flag = (flags or {}).get(exc.field, "--" + exc.field.replace("_", "-"))
            raise CommandError(f"{flag} {exc.value}: {exc.expected}") from None
        raise CommandError(str(exc)) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def home_source(args: argparse.Namespace) -> str:
    """How the home was named, for messages: `--home PATH`, `CONVEYOR_HOME=PATH` or `the default home PATH`."""
    if getattr(args, "home", None) is not None:
        return f"--home {args.home}"
    if os.environ.get(HOME_VARIABLE):
        return f"{HOME_VARIABLE}={os.environ[HOME_VARIABLE]}"
    found = project.current()
    return f"the project's home {found.settings()['home']}" if found else f"the default home {configs.PipelineConfig().home}"


def existing_home(config: configs.PipelineConfig, args: argparse.Namespace, written: bool = True) -> configs.PipelineConfig:
    """`config`, if its home is a folder some Conveyor command has written (any folder if not
    `written`: a server may start on an empty volume before the first push); else a CommandError.
    A mistyped --home must not be reported as an empty home, nor created."""
    home, named = config.home, home_source(args)
    if not home.exists():
        raise CommandError(f"{named}: no such folder (`conveyor run --home {home}` makes a home there)")
    if not home.is_dir():
        raise CommandError(f"{named}: not a folder")
    if written and not any((home / marker).exists() for marker in HOME_MARKERS):
        raise CommandError(f"{named}: not a Conveyor home (none of {', '.join(HOME_MARKERS)} in it)")
    return config


def writable_home(config: configs.PipelineConfig, args: argparse.Namespace) -> configs.PipelineConfig:
    """`config`, its home created if missing; a CommandError if it names a file or cannot be made."""
    home, named = config.home, home_source(args)
    if home.exists() and not home.is_dir():
        raise CommandError(f"{named}: not a folder")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{named}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise CommandError(f"{named}: not writable")
    return config


def local_home_arg(args: argparse.Namespace) -> Path | None:
    """--home as a local path; a URI there is a CommandError (only `--target` commands take one)."""
    home = getattr(args, "home", None)
    if home is not None and spans_io.is_uri(str(home)):
        raise CommandError(f"--home {home} is a URI: only `ct tick|watch|run --target kfp|vertex` reads a cluster home")
    return Path(home) if home is not None else None


@contextlib.contextmanager
def quiet(config: configs.PipelineConfig, command: str) -> Iterator[None]:
    """What libraries print or log during `command` goes to `<home>/logs/<command>.log`, its own
    output stays on the terminal (conveyor/local/progress.py). An unexpected exception is logged
    there with its traceback and becomes a one-line CommandError pointing at the log."""
    import logging

    from conveyor.local.progress import quiet_command

    log_file = config.logs_dir / f"{command.replace(' ', '-')}.log"
    with quiet_command(log_file):
        try:
            yield
        except (CommandError, HomeBusy, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:
            logging.exception("conveyor %s failed", command)
            raise CommandError(f"{type(exc).__name__}: {exc} (traceback in {log_file})", EXIT_FAILED) from None


def say(text: str) -> None:
    """A line on standard output, flushed (progress lines of long commands)."""
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
