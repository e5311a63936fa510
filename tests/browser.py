"""Pages rendered in headless Chromium (Debian's package), and what their DOM shows."""
from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
VOID_ELEMENTS = {"meta", "link", "br", "hr", "img", "input"}


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a throw-away profile; its stdout."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (CONVEYOR_APT_PACKAGES in the Makefile)")
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


class RenderedPage(HTMLParser):
    """A DOM as Chromium serialised it: the text of elements with an id, each table's rows (by the
    table's class), every element's name and attributes, and the whole text."""

    def __init__(self, dom: str):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text_parts: list[str] = []
        self._open_ids: list[tuple[str, int, list[str]]] = []  # (id, depth, text parts)
        self._depth = 0
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag in VOID_ELEMENTS:
            return
        self._depth += 1
        if "id" in attributes:
            self._open_ids.append((attributes["id"] or "", self._depth, []))
        if tag == "table":
            self._table = self.tables.setdefault(attributes.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None
        if self._open_ids and self._open_ids[-1][1] == self._depth:
            name, _, parts = self._open_ids.pop()
            self.by_id[name] = " ".join("".join(parts).split())
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        for _, _, parts in self._open_ids:
            parts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.text_parts).split())

    def body_rows(self, table: str) -> list[list[str]]:
        return [row for row in self.tables[table] if row][1:]  # without the header row

    def assert_inert(self) -> None:
        """No script element and no event-handler attribute anywhere: nothing on the page can run."""
        assert not [tag for tag, _ in self.elements if tag == "script"], "a <script> element reached the DOM"
        handlers = [(tag, name) for tag, attributes in self.elements for name in attributes if name.startswith("on")]
        assert not handlers, f"event handlers reached the DOM: {handlers}"


def rendered(tmp_path: Path, html_file: Path) -> RenderedPage:
    """`html_file` as headless Chromium's DOM shows it."""
    return RenderedPage(chromium(tmp_path, "--dump-dom", html_file.as_uri()))
