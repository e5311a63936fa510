"""pipeline/pages.py, the one Jinja2 environment of every page: escaping, strictness, the shared
filters, every template compiling, and the templates in the package a non-editable install builds."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile

import jinja2
import pytest

from pipeline import pages
from pipeline.configs import REPO_ROOT

PACKAGES = ["pipeline", "conveyor", "conveyor.local", "monitoring"]  # every package with templates/


def test_every_text_is_escaped_and_an_unknown_name_is_an_error():
    env = pages.environment("monitoring")
    assert env.from_string('<p title="{{ x }}">{{ x }}</p>').render(x='"><script>') == (
        '<p title="&#34;&gt;&lt;script&gt;">&#34;&gt;&lt;script&gt;</p>'
    )
    with pytest.raises(jinja2.UndefinedError, match="'missing' is undefined"):
        env.from_string("{{ missing }}").render()


def test_the_shared_filters():
    env = pages.environment("conveyor.local")
    rendered = env.from_string(
        "{{ a|number }} {{ b|number }} {{ c|number('.1f') }} {{ b|number('.3f', '-') }} {{ n|count }} {{ s|percent }}"
    ).render(a=0.123456, b=None, c=float("nan"), n=1234567, s=0.5)
    assert rendered == "0.1235 – nan - 1,234,567 50 %"


def test_every_template_compiles_and_the_pages_extend_the_skeleton():
    found = set()
    for package in PACKAGES:
        folder = REPO_ROOT.joinpath(*package.split("."), "templates")
        for path in folder.glob("*.html.j2"):
            found.add(path.relative_to(REPO_ROOT).as_posix())
            template = pages.environment(package).get_template(path.name)
            if path.name != "page.html.j2":
                assert '{% extends "page.html.j2" %}' in path.read_text(), path
            assert template.name == path.name
    assert found >= {"pipeline/templates/page.html.j2", "conveyor/local/templates/run_report.html.j2",
                     "monitoring/templates/monitoring_report.html.j2"}
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("**/templates/*.html.j2") if ".venv" not in p.parts}
    assert on_disk == found, "a package with templates is missing from PACKAGES (and maybe from setup.py's package_data)"


def test_a_non_editable_install_carries_the_templates_and_the_schema_files(tmp_path):
    """The Dockerfile copies the tree and runs `pip install .`: a wheel built from what it copies
    holds every template and the schema files the code reads at run time."""
    source = tmp_path / "source"
    source.mkdir()
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+$", (REPO_ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    for name in " ".join(copied).split():
        path = REPO_ROOT / name.rstrip("/")
        if path.is_dir():
            shutil.copytree(path, source / path.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / path.name)
    wanted = {p.relative_to(source).as_posix() for p in source.glob("**/templates/*.html.j2")}
    wanted |= {"schema/schema.pbtxt", "schema/completeness.json", "models/taxi.toml"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "wheel"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = (tmp_path / "wheel").glob("conveyor-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    assert len(wanted) >= 5 and wanted <= packaged, sorted(wanted - packaged)
