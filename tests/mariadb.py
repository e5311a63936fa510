"""A throwaway MariaDB server for tests: Debian's mariadb-server, started in a temp datadir.

The `mariadb` fixture initialises a datadir, starts `mariadbd` on 127.0.0.1 on a free port (its
unix socket in the temp dir too), creates a database and a user with a password, yields how to
reach it, and stops the server even when a test fails. `make test` installs mariadb-server
(CONVEYOR_APT_PACKAGES in the Makefile); nothing is downloaded here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests import sockets

SERVER, INSTALL_DB, CLIENT, DUMP = "mariadbd", "mariadb-install-db", "mariadb", "mariadb-dump"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class MariaDB:
    host: str
    port: int
    database: str
    user: str
    password: str
    socket: Path

    def sql(self, statement: str) -> str:
        """Run SQL as root over the unix socket; returns the tab-separated output."""
        return self._as_root(CLIENT, "-N", "-B", "-e", statement)

    def dump(self) -> str:
        """Everything in the test database, as SQL."""
        return self._as_root(DUMP, self.database)

    def _as_root(self, tool: str, *args: str) -> str:
        done = subprocess.run(
            [_binary(tool), "--no-defaults", f"--socket={self.socket}", "-uroot", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        raise RuntimeError(f"{name} not found: install Debian's mariadb-server (`make test` does it)")
    return found


def _wait_until_up(server: subprocess.Popen, sock: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        probe = subprocess.run(
            [_binary(CLIENT), "--no-defaults", f"--socket={sock}", "-uroot", "-e", "SELECT 1"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"mariadbd did not accept connections within {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")


def _start(root: Path) -> tuple[subprocess.Popen, MariaDB]:
    datadir, sock, log = root / "data", root / "mysqld.sock", root / "mariadbd.log"
    user = ["--user=root"] if os.geteuid() == 0 else []  # as root, mariadbd runs only if told so
    subprocess.run(
        [_binary(INSTALL_DB), "--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db",
         f"--datadir={datadir}", *user],
        capture_output=True,
        check=True,
        timeout=120,
    )
    port = sockets.free_port()
    with open(log, "w") as log_handle:
        server = subprocess.Popen(
            [_binary(SERVER), "--no-defaults", f"--datadir={datadir}", f"--socket={sock}", f"--port={port}",
             "--bind-address=127.0.0.1", f"--pid-file={root / 'mariadbd.pid'}", "--skip-name-resolve", *user],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    return server, MariaDB("127.0.0.1", port, "conveyor_mlmd", "conveyor", "test-password-1", sock)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    # A short temp dir: a unix socket path must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="conveyor-mariadb-"))
    server = None
    try:
        server, db = _start(root)
        _wait_until_up(server, db.socket, root / "mariadbd.log")
        db.sql(
            f"CREATE DATABASE {db.database}; "
            f"CREATE USER '{db.user}'@'127.0.0.1' IDENTIFIED BY '{db.password}'; "
            f"GRANT ALL ON {db.database}.* TO '{db.user}'@'127.0.0.1';"
        )
        yield db
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(root, ignore_errors=True)
