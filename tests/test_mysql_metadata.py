"""ML Metadata on MySQL: the pipeline end to end against a real MariaDB (tests/mariadb.py).

Connection settings come from CONVEYOR_MYSQL_* variables, as in production; the password only
from CONVEYOR_MYSQL_PASSWORD. A small span runs twice: the second run is fully cached, which needs
the resolvers and the cache lookups to work against MySQL. Then `conveyor lineage` reads it back.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from conveyor import cli
from conveyor.local import runner as local_run
from data import spans_io
from metadata import connection, lineage
from pipeline import configs
from tests.conftest import SMALL_SPAN_ROWS
from tests.mariadb import mariadb  # noqa: F401 (the fixture)


@pytest.fixture(scope="module")
def mysql_runs(mariadb, shipped_rows, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("mysql")
    env = {
        "CONVEYOR_MYSQL_HOST": mariadb.host,
        "CONVEYOR_MYSQL_PORT": str(mariadb.port),
        "CONVEYOR_MYSQL_DATABASE": mariadb.database,
        "CONVEYOR_MYSQL_USER": mariadb.user,
        connection.MYSQL_PASSWORD_ENV: mariadb.password,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        config = configs.load(home=base / "home", spans_root=base / "spans", train_steps=100, eval_steps=5, span=1)
        spans_io.write_span(config.spans_root, 1, shipped_rows[:SMALL_SPAN_ROWS])
        first = local_run.run(config)
        second = local_run.run(config)
        traced = lineage.for_config(config)
        printed = cli.main(["lineage", "--home", str(config.home)])
        listed = io.StringIO()
        with contextlib.redirect_stdout(listed):
            codes = [cli.main(["runs", "--home", str(config.home)]), cli.main(["runs", "compare", "1", "2", "--home", str(config.home)])]
    return config, first, second, traced, printed, codes, listed.getvalue()


def test_the_store_is_the_mariadb_database_not_sqlite(mysql_runs, mariadb):  # noqa: F811
    config, first, *_ = mysql_runs
    assert config.mysql_host == mariadb.host
    assert not config.metadata_path.exists()
    tables = set(mariadb.sql(f"SHOW TABLES FROM {mariadb.database}").split())
    assert {"Artifact", "Execution", "Event", "Context"} <= tables
    executions = int(mariadb.sql(f"SELECT COUNT(*) FROM {mariadb.database}.Execution"))
    assert executions >= len(first.timings)


def test_the_first_run_is_blessed_and_pushed(mysql_runs):
    _, first, *_ = mysql_runs
    assert first.ok, first.error
    assert first.window_spans == [1] and first.blessed and first.pushed_path


def test_the_second_run_is_fully_cached(mysql_runs):
    _, first, second, *_ = mysql_runs
    assert second.ok, second.error
    statuses = {name: status for name, status, _ in second.timings}
    for resolver in ("span_window", "baseline_model", "previous_statistics", "analyzer_cache", "latest_hyperparameters"):
        assert statuses.pop(resolver) == "resolved"
    assert set(statuses.values()) == {"cached"}, statuses
    assert second.run_id != first.run_id


def test_the_password_is_written_nowhere(mysql_runs, mariadb):  # noqa: F811
    config, *_ = mysql_runs
    for path in config.home.rglob("*"):
        if path.is_file():
            assert mariadb.password.encode() not in path.read_bytes(), path
    assert mariadb.password not in mariadb.dump()


def test_lineage_reads_the_pushed_model_back_from_mysql(mysql_runs):
    _, first, _, traced, printed, *_ = mysql_runs
    assert printed == 0
    assert traced.pushed_path == first.pushed_path and traced.serving_now
    assert [s.span for s in traced.spans] == [1] and traced.blessed
    assert traced.metrics == first.evaluation.metrics["overall"]


def test_runs_lists_and_compares_the_runs_from_mysql(mysql_runs):
    _, first, second, _, _, codes, out = mysql_runs
    assert codes == [0, 0]
    assert f"\n1  {first.run_id}  " in out and f"\n2  {second.run_id}  " in out
    assert f"A: run #1 {first.run_id}\nB: run #2 {second.run_id}\n" in out
    assert f"{first.evaluation.metrics['overall']['auc']:.4f}" in out
