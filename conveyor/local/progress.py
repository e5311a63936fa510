"""Quiet runs: full logs to a file, one line per component on the console as it finishes."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

# Messages TFX's LocalDagRunner and launcher log for each component (tfx 1.21).
_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."
_CACHED = "A cached execution %d is used."
_NEW = "Going to run a new execution %d"
_SKIPPED = "Skipping execution for %s"


# `password: "..."` (proto text) or `"password": "..."` (JSON).
_PASSWORD = re.compile(r'(password"?\s*[:=]\s*)"(?:[^"\\]|\\.)*"')


class RedactPasswords(logging.Filter):
    """Blanks passwords in log records: TFX logs the MLMD connection config, MySQL password included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "password" in message:
            record.msg, record.args = _PASSWORD.sub(r'\1"<redacted>"', message), None
        return True


class ComponentProgress(logging.Handler):
    """Turns the launcher's log records into `name  status  seconds` lines."""

    def __init__(self, emit_line: Callable[[str], None]):
        super().__init__(level=logging.INFO)
        self._emit_line = emit_line
        self._node: str | None = None
        self._status = "ran"
        self._started = 0.0
        self.timings: list[tuple[str, str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg
        if message == _RUNNING:
            self._node, self._status, self._started = str(record.args[0]), "resolved", time.monotonic()
        elif message == _CACHED:
            self._status = "cached"
        elif message == _NEW:
            self._status = "ran"
        elif message == _SKIPPED:
            self._status = "skipped"
        elif message == _FINISHED and self._node is not None:
            seconds = time.monotonic() - self._started
            self.timings.append((self._node, self._status, seconds))
            self._emit_line(f"  {self._node:<22} {self._status:<8} {seconds:7.1f} s")
            self._node = None

    def failed_component(self) -> str | None:
        """The component that was running when the run stopped, if any."""
        return self._node


# The real terminal (stdout, stderr) while file descriptors 1 and 2 point at a log file; innermost last.
_TERMINALS: list[tuple[TextIO, TextIO]] = []


@contextlib.contextmanager
def _console_to(log_file: Path) -> Iterator[tuple[TextIO, TextIO]]:
    """Send file descriptors 1 and 2 (Python, C++ and subprocess output) to `log_file`; yield
    streams to the real terminal. Nested calls re-point the descriptors and share the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    if _TERMINALS:
        terminal, owned = _TERMINALS[-1], []
    else:
        (out, own_out), (err, own_err) = _terminal_stream(sys.stdout, 1), _terminal_stream(sys.stderr, 2)
        terminal, owned = (out, err), [s for s, own in ((out, own_out), (err, own_err)) if own]
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # library print()s follow the descriptors
    _TERMINALS.append(terminal)
    try:
        yield terminal
    finally:
        _TERMINALS.pop()
        _flush(sys.stdout, sys.stderr)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        sys.stdout, sys.stderr = saved_streams
        for stream in owned:
            with contextlib.suppress(BrokenPipeError):  # the reader went away: what is left cannot be delivered
                stream.close()


def _flush(*streams: TextIO) -> None:
    for stream in streams:
        with contextlib.suppress(BrokenPipeError):
            stream.flush()


def _terminal_stream(stream: TextIO, fd: int) -> tuple[TextIO, bool]:
    """A stream to where `stream` writes now: a duplicate of `fd` if it writes there (the descriptor
    is about to point at the log), else `stream` itself (e.g. an in-memory capture). Owned: close it."""
    try:
        on_fd = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # no descriptor behind it
        on_fd = False
    return (os.fdopen(os.dup(fd), "w", buffering=1), True) if on_fd else (stream, False)


@contextlib.contextmanager
def _logging_to(log_file: Path, replace_handlers: bool, extra: tuple[logging.Handler, ...] = ()) -> Iterator[None]:
    """Python and absl logging at INFO into `log_file` (and `extra`), passwords redacted; restored afterwards."""
    from absl import logging as absl_logging

    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_verbosity = absl_logging.get_verbosity()
    root.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redact = RedactPasswords()
    if replace_handlers:
        for handler in saved_handlers:
            root.removeHandler(handler)
    for handler in (file_handler, *extra):
        root.addHandler(handler)
    for handler in root.handlers:  # the first handler a record reaches redacts it for all
        handler.addFilter(redact)
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.removeFilter(redact)
        file_handler.close()
        # Back to exactly the handlers we found: libraries (Beam) add their own during a run.
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        absl_logging.set_verbosity(saved_verbosity)


@contextlib.contextmanager
def quiet_command(log_file: Path) -> Iterator[None]:
    """A whole command: what libraries print or log (TensorFlow's C++ start-up lines, absl, TFMA
    notices) goes to `log_file`; the command's own print()s and errors stay on the terminal."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.captureWarnings(True)
    with _console_to(log_file) as (out, err), _logging_to(log_file, replace_handlers=True):
        sys.stdout, sys.stderr = out, err
        try:
            yield
        finally:
            _flush(sys.stdout, sys.stderr)
            logging.captureWarnings(False)


@contextlib.contextmanager
def quiet_logs(log_file: Path, verbose: bool) -> Iterator[ComponentProgress]:
    """A run: all logging and output to `log_file`; the terminal gets progress lines only (everything if verbose)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        console: TextIO = sys.stdout if verbose else stack.enter_context(_console_to(log_file))[0]
        progress = ComponentProgress(lambda line: print(line, file=console, flush=True))
        stack.enter_context(_logging_to(log_file, replace_handlers=not verbose, extra=(progress,)))
        yield progress
