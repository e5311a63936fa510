"""The schema-change logic without a pipeline: proposals from generated statistics
(schema/changes.py), the versions of a home (schema/versions.py) and what a run imports
(pipeline/pipeline.py schema_source). The workflow through the installed command is
tests/test_schema_changes.py."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from schema import changes, versions

SCHEMA = """
feature { name: "payment_type" type: BYTES domain: "payment_type" presence { min_fraction: 1.0 min_count: 1 } }
feature { name: "trip_start_hour" type: INT int_domain { min: 0 max: 23 } presence { min_fraction: 1.0 min_count: 1 } }
feature { name: "fare" type: FLOAT float_domain { min: 0.0 } presence { min_fraction: 1.0 min_count: 1 } }
string_domain { name: "payment_type" value: "Cash" value: "Credit Card" }
"""


def _schema() -> schema_pb2.Schema:
    return text_format.Parse(SCHEMA, schema_pb2.Schema())


def _stats(rows: int, payment=lambda i: "Cash" if i % 2 else "Credit Card", hour=lambda i: i % 24, fare=lambda i: 5.0 + i % 7):
    frame = pd.DataFrame({
        "payment_type": [payment(i) for i in range(rows)],
        "trip_start_hour": [hour(i) for i in range(rows)],
        "fare": [fare(i) for i in range(rows)],
    })
    return tfdv.generate_statistics_from_dataframe(frame)


def test_a_new_payment_type_is_exactly_one_domain_value_with_its_rows():
    train = _stats(400, payment=lambda i: "Venmo" if i < 120 else "Cash")
    evaluation = _stats(100, payment=lambda i: "Venmo" if i < 30 else "Credit Card")
    proposal = changes.propose(_schema(), [train, evaluation])
    assert proposal.changes == [changes.Change("payment_type", changes.DOMAIN_VALUE, "absent", '"Venmo"', 150)]
    assert proposal.not_schema == []
    assert proposal.changes[0].line() == '  payment_type: domain value: absent -> "Venmo" (150 rows)'
    updated = changes.apply(_schema(), proposal.changes)
    assert list(updated.string_domain[0].value) == ["Cash", "Credit Card", "Venmo"]
    assert changes.propose(updated, [train, evaluation]).changes == []  # the new schema accepts the span


def test_a_widened_range_moves_only_the_bound_the_span_crossed():
    stats = _stats(240, hour=lambda i: 30 if i < 12 else i % 24, fare=lambda i: -2.0123456789 if i == 0 else 5.0)
    proposal = changes.propose(_schema(), [stats], outside={"trip_start_hour": 12, "fare": 1})
    by_kind = {(c.feature, c.kind): c for c in proposal.changes}
    assert set(by_kind) == {("trip_start_hour", changes.MAXIMUM), ("fare", changes.MINIMUM)}
    hour, fare = by_kind["trip_start_hour", changes.MAXIMUM], by_kind["fare", changes.MINIMUM]
    assert (hour.before, hour.after, hour.rows) == ("23", "30", 12)
    assert (fare.before, fare.rows) == ("0.0", 1) and -2.0123458 < float(fare.after) <= -2.0123456789  # float32, outward
    assert changes.propose(_schema(), [stats]).changes[0].rows is None  # not counted without the span's files
    updated = changes.apply(_schema(), proposal.changes)
    assert updated.feature[1].int_domain.max == 30 and updated.feature[1].int_domain.min == 0
    assert updated.feature[2].float_domain.min == float(fare.after)
    assert changes.propose(schema_pb2.Schema.FromString(updated.SerializeToString()), [stats]).changes == []  # as stored
    assert changes.propose(updated, [stats]).changes == []


def test_a_missing_column_is_not_a_schema_change():
    frame = pd.DataFrame({"payment_type": ["Cash"] * 50, "fare": [3.0] * 50})  # no trip_start_hour
    proposal = changes.propose(_schema(), [tfdv.generate_statistics_from_dataframe(frame)])
    assert proposal.changes == []
    assert proposal.not_schema == ["trip_start_hour: SCHEMA_MISSING_COLUMN"]


def test_accepted_versions_follow_the_curated_file_and_refuse_an_edited_one(tmp_path):
    curated = tmp_path / "schema.pbtxt"
    curated.write_text(SCHEMA)
    home = tmp_path / "home"
    first = versions.current(home, curated)
    assert (first.version, first.file, first.span) == (1, str(curated), None)
    assert not (home / "schema").exists()  # reading creates nothing

    change = changes.Change("payment_type", changes.DOMAIN_VALUE, "absent", '"Venmo"', 150)
    text = text_format.MessageToString(changes.apply(_schema(), [change]))
    made = versions.accept(home, curated, 7, text, [change.as_dict()], "Venmo launched", "ana")
    assert (made.version, made.parent, made.span, made.by) == (2, 1, 7, "ana")
    assert Path(made.file) == home / "schema/versions/0002.pbtxt" and Path(made.file).read_text() == text
    assert json.loads((home / "schema/versions/0002.json").read_text())["reason"] == "Venmo launched"
    assert versions.current(home, curated) == made
    assert [v.version for v in versions.history(home, curated)] == [1, 2]
    assert made.describe().startswith("version 2 (span 7, accepted by ana at ")
    assert versions.described(made.properties()) == made.describe()
    assert versions.change_lines(home, curated, 2) == ['payment_type: domain value: absent -> "Venmo" (150 rows)  [version 2, span 7: \'Venmo launched\']']

    Path(made.file).write_text(SCHEMA)  # edited by hand after acceptance
    with pytest.raises(versions.VersionError, match=r"0002\.pbtxt: schema version 2 no longer holds what was accepted"):
        versions.current(home, curated)


def test_a_crash_before_the_record_leaves_the_previous_version(tmp_path):
    curated = tmp_path / "schema.pbtxt"
    curated.write_text(SCHEMA)
    home = tmp_path / "home"
    folder = home / versions.VERSIONS_DIR
    folder.mkdir(parents=True)
    (folder / "0002.pbtxt").write_text("torn")  # the schema written, the process killed before its record
    (folder / ".0002.json.123.tmp").write_text("{")  # and a half-written record
    assert versions.current(home, curated).version == 1
    made = versions.accept(home, curated, 3, SCHEMA, [], "", "ana")  # the next accept takes the number over
    assert made.version == 2 and versions.current(home, curated) == made


def test_a_rejection_is_recorded_per_span(tmp_path):
    assert versions.rejection(tmp_path, 4) is None
    versions.reject(tmp_path, 4, 1, [], "a test feed, not a real payment type", "ben")
    found = versions.rejection(tmp_path, 4)
    assert (found.span, found.version, found.by, found.reason) == (4, 1, "ben", "a test feed, not a real payment type")
    assert versions.rejections(tmp_path) == [found]


def test_a_run_imports_the_newest_version_and_the_same_version_gives_the_same_properties(tmp_path):
    from pipeline import configs
    from pipeline.pipeline import schema_source

    config = configs.load(home=tmp_path / "home")
    first = schema_source(config)
    assert first == schema_source(config) and first[0] == str(config.schema_path)
    assert first[1].properties()["schema_sha256"] == versions.digest(config.schema_path)
    made = versions.accept(config.home, config.schema_path, 3, config.schema_path.read_text() + "\n", [], "why", "ana")
    file, version = schema_source(config)
    assert (file, version) == (made.file, made)
    assert version.properties() != first[1].properties()  # another cache key for the import
    assert schema_source(config.replace(remote_schema="gs://b/0002.pbtxt"))[0] == "gs://b/0002.pbtxt"


def test_kubeflow_compiles_an_accepted_version_only_from_a_schema_the_cluster_reads(tmp_path):
    from conveyor.kubeflow import compiler
    from pipeline import configs

    config = configs.load(home=tmp_path / "home", remote_pipeline_root="gs://bucket/conveyor")
    assert compiler.location_problems(config) == []  # version 1: the image's curated copy
    made = versions.accept(config.home, config.schema_path, 3, config.schema_path.read_text() + "\n", [], "why", "ana")
    [problem] = compiler.location_problems(config)
    assert problem.startswith("--schema: this home imports schema version 2 (span 3, accepted by ana at ")
    assert problem.endswith(f"copy {made.file} to the bucket and pass --schema gs://BUCKET/.../0002.pbtxt")
    assert compiler.location_problems(config.replace(remote_schema="gs://bucket/schema/0002.pbtxt")) == []
