"""Bad input at the front door, through the installed `conveyor` command: one line naming the flag,
variable or path, a distinct exit code (2: bad input), no traceback, and nothing created or deleted.
Also: a closed pipe (`conveyor models | head`) and Ctrl-C during a run."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from data import spans_io
from tests.conftest import SMALL_SPAN_ROWS
from tests.serving_helpers import CONVEYOR

READ_ONLY = (["models"], ["lineage"], ["card"], ["runs"], ["runs", "compare", "1", "2"], ["ct", "status"], ["rollback"], ["monitor"],
             ["tensorboard", "--port", "0"], ["serve", "--port", "0"])


def conveyor(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def assert_one_line(done: subprocess.CompletedProcess, code: int, pattern: str) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), done.stderr


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_mistyped_home_is_named_and_never_created(command, tmp_path):
    typo = tmp_path / "outptus"
    done = conveyor(*command, "--home", str(typo))
    assert_one_line(done, 2, rf"conveyor {command[0]}.*: --home {re.escape(str(typo))}: no such folder .*")
    assert not typo.exists()


def test_a_mistyped_home_from_the_environment_is_named_as_the_variable(tmp_path):
    typo = tmp_path / "typo"
    done = conveyor("models", env={"CONVEYOR_HOME": str(typo)})
    assert_one_line(done, 2, rf"conveyor models: CONVEYOR_HOME={re.escape(str(typo))}: no such folder .*")
    assert not typo.exists()


def test_a_folder_that_is_not_a_home_is_not_reported_as_an_empty_one(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = conveyor("models", "--home", str(tmp_path))
    assert_one_line(done, 2, r"conveyor models: --home .*: not a Conveyor home \(none of metadata.sqlite, .*\)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_home_that_is_a_file_or_cannot_be_made_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line(conveyor("run", "--home", str(afile)), 2, r"conveyor run: --home .*/afile: not a folder")
    assert_one_line(conveyor("run", "--home", str(afile / "home")), 2, r"conveyor run: --home .*/afile/home: cannot create it \(Not a directory\)")
    assert afile.read_text() == "x"


@pytest.mark.parametrize("command", (["run"], ["models"], ["ct", "tick"]), ids=" ".join)
@pytest.mark.parametrize("value, expected", (("abc", "expected an integer"), ("-5", "expected a number >= 1")))
def test_a_bad_setting_names_its_variable_before_anything_is_written(command, value, expected, tmp_path):
    home = tmp_path / "home"
    if command == ["models"]:
        (home / "serving_model").mkdir(parents=True)
    done = conveyor(*command, "--home", str(home), env={"CONVEYOR_TRAIN_STEPS": value}, cwd=tmp_path)
    assert_one_line(done, 2, rf"conveyor {' '.join(command)}: CONVEYOR_TRAIN_STEPS={value}: {expected}")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == (["home", "home/serving_model"] if command == ["models"] else [])


def test_a_bad_flag_value_is_one_line(tmp_path):
    done = conveyor("run", "--home", str(tmp_path / "h"), "--train-steps", "-5")
    assert_one_line(done, 2, r"conveyor run: argument --train-steps: expected an integer >= 1, got '-5' \(see `conveyor run --help`\)")
    assert not (tmp_path / "h").exists()


def test_a_mistyped_flag_gets_the_nearest_one_and_a_prefix_is_not_a_flag(tmp_path):
    home = str(tmp_path / "h")
    assert_one_line(conveyor("run", "--home", home, "--trian-steps", "5"), 2,
                    r"conveyor run: unknown flag --trian-steps \(did you mean --train-steps\?\) \(see `conveyor run --help`\)")
    assert_one_line(conveyor("run", "--home", home, "--train-step", "5"), 2,
                    r"conveyor run: unknown flag --train-step \(did you mean --train-steps\?\) .*")
    assert_one_line(conveyor("ct", "status", "--hom", home), 2, r"conveyor ct status: unknown flag --hom \(did you mean --home\?\) .*")
    assert_one_line(conveyor("modles"), 2, r"conveyor: argument COMMAND: 'modles' is not one of init, run, tune, ct, .* \(did you mean models\?\) .*")
    assert_one_line(conveyor("ct", "tick", "--home", home, "--drift-policy", "nope"), 2,
                    r"conveyor ct tick: argument --drift-policy: 'nope' is not one of block, warn .*")
    assert not (tmp_path / "h").exists()


def test_missing_spans_are_one_line(tmp_path, shipped_rows):
    done = conveyor("run", "--home", str(tmp_path / "h"), "--spans-root", str(tmp_path / "nowhere"))
    assert_one_line(done, 2, r"conveyor run: --spans-root .*/nowhere: no such folder \(expected span-N/ folders of CSV files\)")
    spans_io.write_span(tmp_path / "spans", 1, shipped_rows[:10])
    done = conveyor("run", "--home", str(tmp_path / "h"), "--spans-root", str(tmp_path / "spans"), "--span", "7")
    assert_one_line(done, 2, r"conveyor run: --span 7: no span-7/ with CSV files under .*/spans \(spans there: 1\)")
    assert not (tmp_path / "h").exists()


def test_tune_without_an_ingested_span_is_one_line_and_creates_nothing(shipped_rows, tmp_path):
    spans_io.write_span(tmp_path / "spans", 1, shipped_rows[:10])
    done = conveyor("tune", "--home", str(tmp_path / "h"), "--spans-root", str(tmp_path / "spans"))
    assert_one_line(done, 2, r"conveyor tune: --home .*/h: no span ingested yet, so no window to tune on \(`conveyor run` first, or --span N\)")
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("args, env, expected", (
    (["--max-trials", "0"], {}, r"argument --max-trials: expected an integer >= 1, got '0' \(see `conveyor tune --help`\)"),
    (["--objective", "loss"], {}, r"argument --objective: 'loss' is not one of auc, binary_accuracy \(see `conveyor tune --help`\)"),
    ([], {"CONVEYOR_TUNE_OBJECTIVE": "loss"}, r"CONVEYOR_TUNE_OBJECTIVE=loss: expected one of auc, binary_accuracy"),
    ([], {"CONVEYOR_TUNE_MAX_SECONDS": "0"}, r"CONVEYOR_TUNE_MAX_SECONDS=0: expected a number > 0"),
    ([], {"CONVEYOR_TUNE_MAX_TRIALS": "many"}, r"CONVEYOR_TUNE_MAX_TRIALS=many: expected an integer"),
), ids=("flag-trials", "flag-objective", "env-objective", "env-seconds", "env-trials"))
def test_a_bad_tuning_setting_is_one_line_naming_it(args, env, expected, tmp_path):
    done = conveyor("tune", "--home", str(tmp_path / "h"), *args, env=env)
    assert_one_line(done, 2, rf"conveyor tune: {expected}")
    assert not (tmp_path / "h").exists()


def test_runs_compare_names_an_unknown_run_and_a_page_it_cannot_write(small_run, tmp_path):
    home = str(small_run[0].home)
    assert_one_line(conveyor("runs", "compare", "1", "7", "--home", home), 2,
                    r"conveyor runs compare: 7: no such run \(expected a number from `conveyor runs`, 1\.\.1, or a run id\)")
    assert_one_line(conveyor("runs", "compare", "1", "1", "--home", home, "--html", str(tmp_path / "no" / "page.html")), 2,
                    r"conveyor runs compare: --html .*/no/page.html: expected a file in an existing folder")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", (["models"], ["lineage"], ["card"], ["runs"], ["ct", "status"]), ids=" ".join)
def test_a_reader_that_went_away_ends_the_command_quietly(command, small_run):
    """`conveyor models | head -1`, made certain: the pipe's reading end is closed before the command writes."""
    read, write = os.pipe()
    os.close(read)
    args = [*command, "--home", str(small_run[0].home)]
    try:
        done = subprocess.run([str(CONVEYOR), *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


def test_ctrl_c_during_a_run_is_interrupted_not_failed(shipped_rows, tmp_path):
    spans_io.write_span(tmp_path / "spans", 1, shipped_rows[:SMALL_SPAN_ROWS])
    started = time.monotonic()
    run = subprocess.Popen([str(CONVEYOR), "run", "--home", str(tmp_path / "home"), "--spans-root", str(tmp_path / "spans"),
                            "--train-steps", "50", "--eval-steps", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while not any("StatisticsGen" in line for line in lines):  # well into the run, Beam working
        lines.append(run.stdout.readline())
        assert lines[-1], "the run ended before StatisticsGen"
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=300)
    wall = time.monotonic() - started
    assert run.returncode == 130, out + err
    assert err.splitlines()[-1] == "conveyor run: interrupted" and "Traceback" not in err
    summary = "".join(lines) + out
    assert re.search(r"^INTERRUPTED in \w+", summary, re.M) and "FAILED" not in summary and "pushed: nothing" in summary
    total = float(re.search(r"^total: ([\d.]+) s", summary, re.M).group(1))
    assert 0.8 * wall <= total <= wall  # the wall time of the pass, importing TFX included
