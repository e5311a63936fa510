"""`conveyor init`: the contract inferred from a CSV file (types, optional columns, ids and constants
left unused, transforms, slices, the label's positive value), every refusal one line with exit 2
and nothing created, and how commands find a project (pipeline/project.py)."""
from __future__ import annotations

import csv
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from models import contract as contract_lib
from models import features
from pipeline import configs, project
from schema import infer_contract
from tests import churn_data, wine
from tests.serving_helpers import CONVEYOR
from tests.test_cli_input import assert_one_line


def _conveyor(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed command (init and read-only commands: the fast tier, tests/tiers.py)."""
    return subprocess.run([str(CONVEYOR)] + argv, capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ, **(env or {})})


def _table(tmp_path: Path, columns: dict[str, list[str]]) -> infer_contract.Table:
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
    return infer_contract.read_csv(path)


def _contract(tmp_path: Path, table: infer_contract.Table, label: str, positive: str | None = None) -> contract_lib.Contract:
    """The inferred text, parsed back by the contract's own parser."""
    text = infer_contract.infer(table, label, positive, "m")
    return contract_lib.parse(tomllib.loads(text), tmp_path / "contract.toml")


@pytest.fixture(scope="module")
def churn(tmp_path_factory) -> tuple[Path, contract_lib.Contract]:
    folder = tmp_path_factory.mktemp("churn")
    path = churn_data.write(folder / "churn.csv")
    return path, _contract(folder, infer_contract.read_csv(path), "churned")


def test_churn_columns_are_typed_as_csv_example_gen_types_them(churn):
    _, c = churn
    assert c.raw_types == {"customer_id": "INT", "country": "BYTES", "age": "INT", "tenure_months": "INT", "monthly_charges": "FLOAT",
                           "total_spend": "FLOAT", "support_calls": "INT", "plan": "BYTES", "region": "BYTES", "payment": "BYTES",
                           "postcode": "INT", "churned": "BYTES"}
    assert [n for n in c.csv_columns if c.column(n).optional] == ["total_spend"]  # the one column with empty cells


def test_ids_and_constants_are_unused_and_say_why(churn, tmp_path):
    path, c = churn
    assert c.unused == ("customer_id", "country")
    text = infer_contract.infer(infer_contract.read_csv(path), "churned", None, "churn")
    assert "#   customer_id: an id: a different value in every row" in text and "#   country: constant: 'NL' in every row" in text


def test_transforms_follow_what_each_column_holds(churn):
    _, c = churn
    assert {f.name: (f.transform, f.buckets) for f in c.features} == {
        "age": ("zscore", 0), "tenure_months": ("zscore", 0), "monthly_charges": ("zscore", 0),
        "total_spend": ("zscore_log1p", 0),  # non-negative and skewed
        "support_calls": ("category", 10),  # 0..9: max + 1 buckets
        "plan": ("vocabulary", 0), "region": ("vocabulary", 0), "payment": ("vocabulary", 0),
        "postcode": ("hash", 256),  # five digits each: a code, not a quantity
    }


def test_slices_are_at_most_two_features_of_few_values(churn):
    _, c = churn
    assert c.slices == ("support_calls", "plan")  # region and payment qualify too: two at most


def test_the_label_is_the_less_frequent_string_value_and_absent_at_serving(churn):
    _, c = churn
    assert (c.label.kind, c.label.column, c.label.positive, c.label.name, c.label.label_only) == (
        "column", "churned", "yes", "churned_is_yes", ("churned",))
    assert "churned" not in c.serving_features
    assert c.drift_thresholds()["plan"] == infer_contract.DRIFT["string"] and "customer_id" not in c.drift_thresholds()


@pytest.mark.parametrize("values, positive, expected", [
    (["a"] * 150 + ["b"] * 50, None, "b"),  # the less frequent
    (["true"] * 150 + ["false"] * 50, None, "true"),  # named positive, though more frequent
    (["No"] * 50 + ["Yes"] * 150, None, "Yes"),
    (["a"] * 150 + ["b"] * 50, "a", "a"),  # asked for
])
def test_the_positive_value(tmp_path, values, positive, expected):
    table = _table(tmp_path, {"x": [str(i % 7) for i in range(200)], "y": values})
    assert _contract(tmp_path, table, "y", positive).label.positive == expected


def test_an_int_label_of_zero_and_one_needs_no_positive_value(tmp_path):
    table = _table(tmp_path, {"x": [f"{i / 3:.2f}" for i in range(200)], "y": [str(i % 2) for i in range(200)]})
    c = _contract(tmp_path, table, "y")
    assert (c.label.positive, c.raw_types["y"], c.features[0].transform) == ("", "INT", "zscore")


@pytest.mark.parametrize("values, expected", [
    (["setosa", "virginica", "versicolor"] * 70, ("setosa", "versicolor", "virginica")),  # strings, sorted
    (["3", "1", "2", "2"] * 50, (1, 2, 3)),  # consecutive ints, in numeric order
])
def test_a_label_of_three_or_more_values_is_multi_class(tmp_path, values, expected):
    table = _table(tmp_path, {"x": [f"{i / 3:.2f}" for i in range(len(values))], "y": values})
    c = _contract(tmp_path, table, "y")
    assert (c.label.kind, c.label.column, c.label.classes, c.label.name, c.label.label_only) == ("classes", "y", expected, "y_class", ("y",))
    assert c.label.multiclass and "y" not in c.serving_features


@pytest.mark.parametrize("values, pattern", [
    (["1", "2", "4"] * 70, r"int classes 1, 2, 4: expected consecutive integers \(or a string column\)"),
    (["0.5", "1.5", "2.5"] * 70, r"a float column of 3 values: expected the classes of a string or int column"),
    ([f"c{i % 60}" for i in range(210)], r"60 values: expected 2 to 50 classes"),
])
def test_a_multi_class_label_that_cannot_be_one_is_refused(tmp_path, values, pattern):
    table = _table(tmp_path, {"x": [f"{i / 3:.2f}" for i in range(len(values))], "y": values})
    with pytest.raises(infer_contract.InferenceError, match=pattern):
        infer_contract.infer(table, "y", None, "m")


def test_types_are_those_of_the_csv_decoder(tmp_path):
    table = _table(tmp_path, {
        "mixed": ["1", "2.5"] * 100,  # an int and a float: float
        "big": ["1", str(2**64)] * 100,  # beyond int64: string, as tfx_bsl reads it
        "sparse": ["", "3"] * 100,  # empty cells: optional
        "y": ["p", "q"] * 100,
    })
    c = _contract(tmp_path, table, "y")
    assert (c.column("mixed").type, c.column("big").type, c.column("sparse").type, c.column("sparse").optional) == (
        "float", "string", "int", True)
    assert c.unused == ("sparse",)  # one value: constant, even with empty cells


def test_spans_split_the_rows_in_order():
    rows = [{"i": str(i)} for i in range(305)]
    parts = infer_contract.split(rows, 3)
    assert [len(p) for p in parts] == [102, 102, 101] and [r for p in parts for r in p] == rows


# Refusals, through the installed command: one line, exit 2, nothing created.

def _refused(tmp_path: Path, args: list[str], pattern: str) -> None:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert_one_line(_conveyor(["init"] + args), 2, pattern)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.fixture()
def csv_file(tmp_path: Path) -> Path:
    return churn_data.write(tmp_path / "churn.csv", churn_data.rows(400))


def test_refused_a_folder_that_is_not_empty(tmp_path, csv_file):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "mine.txt").write_text("x")
    _refused(tmp_path, [str(tmp_path / "proj"), "--from-csv", str(csv_file), "--label", "churned"],
             r"conveyor init: .*/proj: not empty \(name a new or empty folder for the project\)")
    _refused(tmp_path, [str(csv_file), "--from-csv", str(csv_file), "--label", "churned"], r"conveyor init: .*/churn.csv: not a folder .*")


@pytest.mark.parametrize("content, pattern", [
    (None, r"--from-csv .*/data.csv: cannot read it \(No such file or directory\)"),
    (b"", r"--from-csv .*/data.csv: expected a CSV file whose first line names its columns"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", r"--from-csv .*/data.csv: expected a UTF-8 CSV file .*"),
    (b"a,b\n1,2\n3\n", r"--from-csv .*/data.csv: line 3 has 1 cells, the header 2"),
    (b"a,a\n1,2\n", r"--from-csv .*/data.csv: column 'a' is named twice in the header"),
])
def test_refused_a_file_that_is_not_a_csv_with_a_header(tmp_path, content, pattern):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_bytes(content)
    _refused(tmp_path, [str(tmp_path / "proj"), "--from-csv", str(data), "--label", "a"], "conveyor init: " + pattern)


@pytest.mark.parametrize("change, args, pattern", [
    (None, ["--label", "churn"], r"--label churn: not a column of .*churn.csv \(its columns: customer_id, .*, churned\)"),
    ({"churned": "no"}, ["--label", "churned"], r"--label churned: one value \(no\): a label needs two"),
    (None, ["--label", "plan", "--positive", "pro"], r"--positive pro: plan has 3 values \(a multi-class label\): --positive names a two-valued label's"),
    (None, ["--label", "churned", "--positive", "Yes"], r"--positive Yes: not a value of churned \(its values: no, yes\)"),
    (None, ["--label", "churned", "--spans", "5"], r"--spans 5: 400 rows make spans of 80, fewer than 100 \(try --spans 4\)"),
    (None, ["--label", "churned", "--name", "my model"], r"--name my model: expected a model name of .*"),
    (None, ["--label", "churned", "--spans", "0"], r"argument --spans: expected an integer >= 1, got '0' .*"),
])
def test_refused_a_label_or_option_that_does_not_fit(tmp_path, change, args, pattern):
    rows = churn_data.rows(400)
    if isinstance(change, dict):
        rows = [{**r, **change} for r in rows]
    data = churn_data.write(tmp_path / "churn.csv", rows)
    _refused(tmp_path, [str(tmp_path / "proj"), "--from-csv", str(data), *args], "conveyor init: " + pattern)


# The project made, and how commands find it.

@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """`conveyor init` on 400 churn rows, into an existing empty folder."""
    root = tmp_path_factory.mktemp("made")
    data = churn_data.write(root / "churn.csv", churn_data.rows(400))
    (root / "shop").mkdir()
    done = _conveyor(["init", str(root / "shop"), "--from-csv", str(data), "--label", "churned", "--name", "churn"])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "cd " + str(root / "shop") in done.stdout and "/v1/models/churn:predict" in done.stdout
    return root / "shop"


def test_init_writes_the_project_and_nothing_else(made):
    files = sorted(str(p.relative_to(made)) for p in made.rglob("*") if p.is_file())
    assert files == ["contract.toml", "conveyor.toml", "outputs/logs/init.log", "schema/completeness.json", "schema/schema.pbtxt",
                     "spans/span-1/data.csv", "spans/span-2/data.csv"]
    assert [p.name for p in made.parent.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    assert contract_lib.load(made / "contract.toml").model_name == "churn"
    assert [len(list(csv.DictReader(open(made / f"spans/span-{k}/data.csv")))) for k in (1, 2)] == [200, 200]


def test_the_schema_is_derived_from_the_projects_data_only(made):
    import json

    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    schema = io_utils.parse_pbtxt_file(str(made / "schema/schema.pbtxt"), schema_pb2.Schema())
    assert [f.name for f in schema.feature] == list(churn_data.COLUMNS)
    by_name = {f.name: f for f in schema.feature}
    assert list(by_name["churned"].not_in_environment) == ["SERVING"]
    completeness = json.loads((made / "schema/completeness.json").read_text())
    assert set(completeness["measured"]) == {"span-1", "span-2"}  # no taxi sample mixed in
    assert by_name["total_spend"].presence.min_fraction == completeness["floors"]["total_spend"] < 1.0


def test_commands_use_the_project_inside_it_or_named(made, monkeypatch, tmp_path):
    # A copy of the environment without CONVEYOR_* variables: load() activates the config's contract
    # by setting its variable, and this test's changes must not outlive it.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")})
    expected = {"home": made / "outputs", "spans_root": made / "spans", "schema_path": made / "schema/schema.pbtxt",
                "completeness_path": made / "schema/completeness.json", "contract_path": made / "contract.toml",
                "pipeline_name": "conveyor-churn", "model_name": "churn"}

    def fields(config: configs.PipelineConfig) -> dict:
        return {name: getattr(config, name) for name in expected}

    monkeypatch.chdir(made)
    assert fields(configs.load()) == expected and features.active().model_name == "churn"
    os.environ["CONVEYOR_HOME"] = str(tmp_path / "elsewhere")  # an explicit variable still wins
    assert configs.load().home == tmp_path / "elsewhere"
    del os.environ["CONVEYOR_HOME"]
    monkeypatch.chdir(tmp_path)
    os.environ[project.VARIABLE] = str(made)
    assert fields(configs.load(home=tmp_path / "h")) == {**expected, "home": tmp_path / "h"}  # and a flag
    del os.environ[project.VARIABLE], os.environ[features.PATH_VARIABLE]  # the latter set by the loads above
    monkeypatch.chdir(configs.REPO_ROOT)  # the checkout is not a project: the taxi, as ever
    config = configs.load()
    assert (config.home, config.contract_path, config.pipeline_name) == (configs.REPO_ROOT / "outputs", features.DEFAULT_PATH, "conveyor-taxi")


def test_a_folder_that_is_not_a_project_is_one_line(tmp_path):
    assert_one_line(_conveyor(["models", "--project", str(tmp_path)]), 2,
                    rf"conveyor models: --project {tmp_path}: not a Conveyor project \(no conveyor.toml in it; `conveyor init` makes one\)")
    assert_one_line(_conveyor(["models"], env={project.VARIABLE: str(tmp_path)}), 2, rf"conveyor models: CONVEYOR_PROJECT={tmp_path}: not a .*")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_command_names_the_projects_home(made, tmp_path):
    import shutil

    copy = shutil.copytree(made, tmp_path / "copy", ignore=shutil.ignore_patterns("outputs"))
    assert_one_line(_conveyor(["lineage"], cwd=copy), 2, rf"conveyor lineage: the project's home {copy / 'outputs'}: no such folder .*")
    assert not (copy / "outputs").exists()


def test_init_of_a_multi_class_csv_makes_the_classes_the_label_columns_domain(tmp_path):
    """The wine CSV (scikit-learn's, jittered; three cultivars): a `classes` label whose values the schema keeps to."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    data = tmp_path / "wine.csv"
    found = wine.rows(copies=2)
    with open(data, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=wine.COLUMNS)
        writer.writeheader()
        writer.writerows(found)
    done = _conveyor(["init", str(tmp_path / "cellar"), "--from-csv", str(data), "--label", "cultivar"])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    label = contract_lib.load(tmp_path / "cellar" / "contract.toml").label
    assert (label.kind, label.classes) == ("classes", tuple(sorted(wine.CULTIVARS)))
    schema = io_utils.parse_pbtxt_file(str(tmp_path / "cellar/schema/schema.pbtxt"), schema_pb2.Schema())
    [cultivar] = [f for f in schema.feature if f.name == "cultivar"]
    [domain] = [d for d in schema.string_domain if d.name == cultivar.domain]
    assert sorted(domain.value) == sorted(wine.CULTIVARS) and list(cultivar.not_in_environment) == ["SERVING"]


def test_headers_that_are_not_feature_names_get_one_and_the_label_is_found_by_either(tmp_path):
    header = ["Customer ID", "Monthly Fee ($)", "plan type", "3rd party", "plan_type", "Churned?"]
    rows = [[str(i), f"{10 + i % 90}.5", "abc"[i % 3], str(i % 2), "xy"[i % 2], "yes" if i % 3 else "no"] for i in range(300)]
    data = tmp_path / "odd.csv"
    with open(data, "w", newline="") as out:
        csv.writer(out).writerows([header, *rows])
    table = infer_contract.read_csv(data)
    assert table.header == ("customer_id", "monthly_fee", "plan_type_2", "c_3rd_party", "plan_type", "churned")
    text = infer_contract.infer(table, "Churned?", None, "m")
    assert "monthly_fee = {type = \"float\"}  # 10.5 to 99.5; the file's header: 'Monthly Fee ($)'" in text
    c = contract_lib.parse(tomllib.loads(text), tmp_path / "contract.toml")
    assert (c.label.column, c.label.positive) == ("churned", "yes")
    assert infer_contract.infer(table, "churned", None, "m") == text
    done = _conveyor(["init", str(tmp_path / "proj"), "--from-csv", str(data), "--label", "Churned?"])
    assert done.returncode == 0, done.stderr
    assert "'Monthly Fee ($)' -> monthly_fee" in done.stdout
    with open(tmp_path / "proj/spans/span-1/data.csv") as written:
        assert next(csv.reader(written)) == list(table.header)


def test_a_spreadsheet_s_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    data = tmp_path / "excel.csv"
    data.write_bytes("\ufeffage,plan\n".encode() + b"".join(f"{20 + i % 40},{'ab'[i % 2]}\n".encode() for i in range(200)))
    assert infer_contract.read_csv(data).header == ("age", "plan")


def test_a_label_of_two_integers_other_than_0_and_1_has_its_positive_value(tmp_path, monkeypatch):
    """A 1/2 label (as many datasets code a yes/no): the less frequent is positive, as preprocessing computes it."""
    table = _table(tmp_path, {"x": [f"{i / 3:.2f}" for i in range(200)], "y": ["1", "2", "2", "2"] * 50})
    text = infer_contract.infer(table, "y", None, "m")
    assert "\npositive = 1\n" in text  # an int in the file, as the column is
    c = _contract(tmp_path, table, "y")
    assert (c.label.kind, c.label.positive, c.label.of_row({"y": 1}), c.label.of_row({"y": "2"})) == ("column", "1", 1, 0)
    assert _contract(tmp_path, table, "y", "2").label.positive == "2"
    import tensorflow as tf

    from models import preprocessing

    path = tmp_path / "contract.toml"
    path.write_text(text)
    monkeypatch.setenv(features.PATH_VARIABLE, str(path))
    assert preprocessing.label(features.active(), {"y": tf.constant([1, 2, 2], tf.int64)}).numpy().tolist() == [1, 0, 0]
