"""A legitimate schema change through the installed `conveyor` (docs/pipeline.md, "Schema changes").

One home, continued from a copy of small_run's (span 1: 800 trips, validated and pushed): span 2,
1,000 trips, 200 of the cash payers paying with "Venmo", is blocked by `conveyor run`; diff proposes
exactly that value; accept records version 2; the next run trains on it and pushes; lineage names
version 2, span 2 and the reason.
A copy of the session's blocked_run home (span 2 blocked by 40 "Bitcoin" payments): reject records
the refusal, the next run is blocked again and diff says it was rejected.
Runs gate no slice (CONVEYOR_MIN_SLICE_EXAMPLES): a slice of this small eval split moves by more
than its gate from seed to seed, and the gate has its own tests (tests/test_blessing.py).
The diff and version logic alone: tests/test_schema_versions.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from data import spans_io
from tests.serving_helpers import CONVEYOR, copy_home

pytestmark = pytest.mark.timeout(1800)
VENMO_ROWS = 200
REASON = "Venmo is a new payment type the fleet accepts since 2026-11"


def conveyor(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVEYOR_MIN_SLICE_EXAMPLES": "100000"}
    return subprocess.run([str(CONVEYOR), *args, "--home", str(home)], capture_output=True, text=True, timeout=timeout, env=env)


def _span(rows: list[dict[str, str]], value: str, count: int) -> list[dict[str, str]]:
    """`rows` with the payment type of the first `count` cash payers replaced by `value`."""
    changed, left = [dict(r) for r in rows], count
    for row in changed:
        if left and row["payment_type"] == "Cash":
            row["payment_type"], left = value, left - 1
    assert not left
    return changed


@pytest.fixture(scope="module")
def workflow(small_run, shipped_rows, tmp_path_factory):
    base = tmp_path_factory.mktemp("schema_changes")
    config = copy_home(small_run, base / "home", spans_root=base / "spans")
    shutil.copytree(small_run[0].spans_root, config.spans_root)
    spans_io.write_span(config.spans_root, 2, _span(shipped_rows[800:1800], "Venmo", VENMO_ROWS))
    home, run = config.home, ("run", "--spans-root", str(config.spans_root), "--train-steps", "100", "--eval-steps", "5")
    steps = {
        "blocked": conveyor(*run, "--span", "2", home=home),
        "diff": conveyor("schema", "diff", "--span", "2", home=home),
        "accept": conveyor("schema", "accept", "--span", "2", "--reason", REASON, "--by", "ana", home=home),
        "accepted_run": conveyor(*run, home=home),  # no --span: the accepted span is pending again
        "lineage": conveyor("lineage", home=home),
    }
    return config, steps


@pytest.fixture(scope="module")
def rejection(blocked_run, tmp_path_factory):
    source, _ = blocked_run
    home = tmp_path_factory.mktemp("schema_rejection") / "home"
    shutil.copytree(source.home, home)
    steps = {
        "reject": conveyor("schema", "reject", "--span", "2", "--reason", "a test feed", "--by", "ben", home=home),
        "rejected_run": conveyor("run", "--spans-root", str(source.spans_root), "--span", "2", home=home),
        "rejected_diff": conveyor("schema", "diff", "--span", "2", home=home),
        "log": conveyor("schema", "log", home=home),
    }
    return home, steps


def test_a_new_payment_type_is_blocked_and_diff_proposes_exactly_that_value(workflow):
    _, steps = workflow
    assert steps["blocked"].returncode == 1 and 'FAILED in DataGate: DataValidationError: span 2 blocked' in steps["blocked"].stdout
    diff = steps["diff"]
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[0].startswith("span 2 (blocked in run ") and lines[0].endswith("against schema version 1 (the curated schema):")
    assert lines[1:3] == [
        "1 schema change would accept it (feature: what: from -> to (rows of the span that need it)):",
        f'  payment_type: domain value: absent -> "Venmo" ({VENMO_ROWS} rows)',
    ]
    assert "not schema changes" not in diff.stdout


def test_accept_records_version_2_and_the_next_run_trains_on_the_span_and_pushes(workflow):
    config, steps = workflow
    assert steps["accept"].returncode == 0, steps["accept"].stderr
    assert steps["accept"].stdout.startswith("accepted: schema version 2 (span 2, accepted by ana at ")
    record = json.loads((config.home / "schema/versions/0002.json").read_text())
    assert (record["version"], record["parent"], record["span"], record["reason"], record["by"]) == (2, 1, 2, REASON, "ana")
    assert [c["after"] for c in record["changes"]] == ['"Venmo"']
    assert '  value: "Venmo"' in (config.home / "schema/versions/0002.pbtxt").read_text()
    accepted = steps["accepted_run"]
    assert accepted.returncode == 0, accepted.stdout[-2000:]
    assert "span ingested: 2; training window: spans [1, 2]" in accepted.stdout  # the reopened span, found by itself
    assert f"\nschema: version 2 (span 2, accepted by ana at {record['at']}: {REASON!r})\n" in accepted.stdout
    assert "pushed: " + str(config.serving_root) in accepted.stdout


def test_lineage_names_the_schema_version_its_span_and_reason(workflow):
    _, steps = workflow
    lineage = steps["lineage"]
    assert lineage.returncode == 0, lineage.stderr
    assert "schema:     version 2 (span 2, accepted by ana at " in lineage.stdout
    assert f"{REASON!r})" in lineage.stdout
    assert f'payment_type: domain value: absent -> "Venmo" ({VENMO_ROWS} rows)  [version 2, span 2: {REASON!r}]' in lineage.stdout
    assert "(imported from " + str(workflow[0].home / "schema/versions/0002.pbtxt") + ")" in lineage.stdout


def test_a_rejected_change_keeps_its_span_blocked(rejection):
    home, steps = rejection
    assert steps["reject"].returncode == 0, steps["reject"].stderr
    assert steps["reject"].stdout.startswith("rejected the schema change span 2 needs (1 change(s)) by ben: 'a test feed'; ")
    assert steps["reject"].stdout.endswith("schema version 1 (the curated schema) stays, span 2 keeps blocking\n")
    assert steps["rejected_run"].returncode == 1
    assert "span 2 blocked before training: payment_type is not one of the schema's values" in steps["rejected_run"].stdout
    diff = steps["rejected_diff"]
    assert diff.returncode == 0 and '  payment_type: domain value: absent -> "Bitcoin" (40 rows)' in diff.stdout.splitlines()
    assert "rejected by ben at " in diff.stdout and "(against version 1): 'a test feed'; the span keeps blocking" in diff.stdout
    assert not (home / "schema/versions").exists()
    log = steps["log"].stdout.splitlines()
    assert log[0].startswith("version 1: the curated schema (") and log[1].startswith("rejected: span 2 against version 1, by ben at ")
    assert log[2:] == ['  payment_type: domain value: absent -> "Bitcoin" (40 rows)']


@pytest.mark.parametrize(("action", "span", "message"), [
    ("diff", "9", "--span 9: no run of this home has gated span 9 (spans gated: 1, 2)"),
    ("accept", "1", "--span 1: not blocked (it passed DataGate in run "),
    ("reject", "2", "--span 2: not blocked (it passed DataGate in run "),
])
def test_a_span_that_is_unknown_or_not_blocked_is_one_line_and_records_nothing(workflow, action, span, message):
    config, _ = workflow
    before = sorted(p.name for p in (config.home / "schema").rglob("*"))
    done = conveyor("schema", action, "--span", span, home=config.home)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"conveyor schema {action}: {message}") and len(done.stderr.splitlines()) == 1
    assert sorted(p.name for p in (config.home / "schema").rglob("*")) == before


def test_a_home_without_runs_is_one_line_and_gets_no_schema_folder(tmp_path):
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    done = conveyor("schema", "accept", "--span", "2", home=home)
    assert (done.returncode, done.stderr) == (2, f"conveyor schema accept: {home}: no run is recorded in this home yet (`conveyor run` first)\n")
    assert not (home / "schema").exists()


def test_the_server_applies_the_accepted_schema_venmo_is_no_longer_out_of_domain(workflow, shipped_rows):
    """`conveyor serve` reads the domains of the schema in force: the accepted "Venmo" is a known
    payment type, a payment type nobody accepted is still flagged."""
    import httpx

    from models.instances import from_row
    from tests.serving_helpers import Serve, metric

    config, _ = workflow
    row = from_row(shipped_rows[0])  # a trip's serving features
    with Serve(config.home, {"CONVEYOR_MIN_SLICE_EXAMPLES": "100000"}) as server:
        for payment in ("Venmo", "Bitcoin"):
            reply = httpx.post(f"{server.url}/v1/models/{config.model_name}:predict",
                               json={"instances": [{**row, "payment_type": payment}]}, timeout=30)
            assert reply.status_code == 200, reply.text
        scraped = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert metric(scraped, "conveyor_out_of_domain_values_total", feature="payment_type") == 1.0  # Bitcoin only
