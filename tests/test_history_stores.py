"""history="stores": the span window and the baseline without MLMD resolvers (what Kubeflow v2 runs).

Unit tests of the validated-span index and the serving root, then the pipeline itself in that form
under LocalDagRunner on small spans: span 1, span 1 unchanged, span 2.
"""
from __future__ import annotations

import json
import os

import pytest
from tfx.types import standard_artifacts

from conveyor.local import runner as local_run
from data import spans_io
from metadata import lineage, runs
from pipeline import configs, versions
from pipeline.components import span_window
from pipeline.components.data_gate import PLAUSIBILITY_PROPERTY
from tests.conftest import SMALL_SPAN_ROWS
from tests.serving_helpers import publish_fake


def _validated(tmp_path, span: int, version: int = 0, splits=("train", "eval"), namespace=None) -> standard_artifacts.Examples:
    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path / f"validated-{namespace or 'upstream'}-{span}-{version}")
    if namespace:
        artifact.set_string_custom_property(spans_io.NAMESPACE_PROPERTY, namespace)
    artifact.split_names = json.dumps(list(splits))
    artifact.set_int_custom_property("span", span)
    artifact.set_int_custom_property("version", version)
    for split in splits:
        os.makedirs(os.path.join(artifact.uri, f"Split-{split}"))
        with open(os.path.join(artifact.uri, f"Split-{split}", "data_tfrecord-00000-of-00001.gz"), "w") as handle:
            handle.write(f"{span}/{version}/{split}")
    return artifact


def _statistics(tmp_path, span: int, version: int = 0) -> standard_artifacts.ExampleStatistics:
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path / f"statistics-{span}-{version}")
    artifact.split_names = json.dumps(["train", "eval"])
    return artifact


def _record(index: str, tmp_path, span: int, version: int = 0, splits=("train", "eval"), namespace=None) -> None:
    span_window.record(index, _validated(tmp_path, span, version, splits, namespace), _statistics(tmp_path, span, version))


def test_the_index_keeps_the_newest_version_of_each_span_and_its_statistics(tmp_path):
    index = str(tmp_path / "index")
    _record(index, tmp_path, 1, version=2)
    _record(index, tmp_path, 1, version=1)  # an older version arrives late
    assert span_window.read_entry(index, 1)["version"] == 2
    _record(index, tmp_path, 1, version=3)
    entry = span_window.read_entry(index, 1)
    assert entry["uri"].endswith("validated-upstream-1-3") and entry["statistics_uri"].endswith("statistics-1-3")
    assert span_window.read_entry(index, 2) is None
    _record(index, tmp_path, 12)
    assert span_window.indexed_spans(index) == [1, 12]  # numeric order, temp files never listed


def test_a_window_is_one_artifact_with_every_span_s_files_and_a_hole_for_a_missing_span(tmp_path):
    index = str(tmp_path / "index")
    for span in (1, 3):  # span 2 never passed the gate
        _record(index, tmp_path, span)
    output = standard_artifacts.Examples()
    output.uri = str(tmp_path / "window")
    entries = [e for e in (span_window.read_entry(index, s) for s in (1, 2, 3)) if e]
    span_window.assemble(entries, output)
    train = sorted(os.listdir(tmp_path / "window" / "Split-train"))
    assert train == ["span-1-data_tfrecord-00000-of-00001.gz", "span-3-data_tfrecord-00000-of-00001.gz"]
    assert (tmp_path / "window" / "Split-eval" / train[1]).read_text() == "3/0/eval"
    assert runs.custom_property(output.mlmd_artifact, span_window.WINDOW_SPANS_PROPERTY) == "1,3"
    assert output.get_int_custom_property("span") == 3
    assert json.loads(output.get_string_custom_property(span_window.WINDOW_SOURCES_PROPERTY)) == [e["uri"] for e in entries]
    assert runs.window_spans([output.mlmd_artifact]) == [1, 3]


def test_feedback_spans_have_their_own_entries_and_join_the_window(tmp_path):
    index = str(tmp_path / "index")
    for span in (1, 2):
        _record(index, tmp_path, span)
    _record(index, tmp_path, 2, namespace=spans_io.FEEDBACK)  # same number, other namespace
    assert span_window.read_entry(index, 2)["uri"].endswith("validated-upstream-2-0")
    assert span_window.read_entry(index, 2, spans_io.FEEDBACK)["uri"].endswith("validated-feedback-2-0")
    lengths = {spans_io.UPSTREAM: 2, spans_io.FEEDBACK: 2}
    # A feedback run on span 2 trains on upstream 1, 2 (the newest validated) and feedback 2.
    entries = span_window.window_entries(index, 2, spans_io.FEEDBACK, lengths)
    assert [(e["namespace"], e["span"]) for e in entries] == [("upstream", 1), ("upstream", 2), ("feedback", 2)]
    output = standard_artifacts.Examples()
    output.uri = str(tmp_path / "window")
    span_window.assemble(entries, output, span_window.read_entry(index, 2, spans_io.FEEDBACK))
    assert "feedback-2-data_tfrecord-00000-of-00001.gz" in os.listdir(tmp_path / "window" / "Split-train")
    assert runs.window_spans([output.mlmd_artifact]) == [1, 2]
    assert runs.window_spans([output.mlmd_artifact], spans_io.FEEDBACK) == [2]
    assert runs.namespace_of(output.mlmd_artifact) == spans_io.FEEDBACK


def test_the_mlmd_window_takes_each_namespace_s_window_and_the_newest_artifact_per_span(tmp_path):
    from pipeline.components.span_resolvers import CANDIDATES, CURRENT, PreviousSpanStrategy, SpanWindowStrategy

    candidates = []
    for i, (span, namespace) in enumerate([(1, None), (2, None), (3, None), (1, "feedback"), (2, "feedback"), (2, "feedback")]):
        artifact = _validated(tmp_path / str(i), span, namespace=namespace)
        artifact.id = i + 1
        candidates.append(artifact)
    current = standard_artifacts.Examples()
    current.set_int_custom_property("span", 2)

    def window(namespace):
        resolved = SpanWindowStrategy(2, 2, namespace).resolve_artifacts(None, {CANDIDATES: candidates, CURRENT: [current]})
        return [(runs.namespace_of(a.mlmd_artifact), a.get_int_custom_property("span"), a.id) for a in resolved[CANDIDATES]]

    # An upstream run of span 2: upstream 1..2, and the newest feedback spans (2, re-validated: id 6).
    assert window("upstream") == [("upstream", 1, 1), ("upstream", 2, 2), ("feedback", 1, 4), ("feedback", 2, 6)]
    # A feedback run of span 2: the newest upstream spans 2..3, feedback 1..2.
    assert window("feedback") == [("upstream", 2, 2), ("upstream", 3, 3), ("feedback", 1, 4), ("feedback", 2, 6)]
    previous = PreviousSpanStrategy("feedback").resolve_artifacts(None, {CANDIDATES: candidates, CURRENT: [current]})
    assert [(a.id) for a in previous[CANDIDATES]] == [4]  # feedback span 1, not upstream span 1


def test_spans_with_different_splits_cannot_share_a_window(tmp_path):
    index = str(tmp_path / "index")
    _record(index, tmp_path, 1)
    _record(index, tmp_path, 2, splits=("train",))
    output = standard_artifacts.Examples()
    output.uri = str(tmp_path / "window")
    with pytest.raises(ValueError, match=r"span 2 has splits .* a window needs the same splits"):
        span_window.assemble([span_window.read_entry(index, 1), span_window.read_entry(index, 2)], output)


def test_pushed_versions_are_published_pushes_in_time_order(tmp_path):
    for version in ("1700000100", "1700000020"):
        publish_fake(tmp_path, version)
    os.makedirs(tmp_path / "1700000200")  # a torn copy: never published
    (tmp_path / "notes").mkdir()
    assert versions.ready_versions(str(tmp_path)) == ["1700000020", "1700000100"]
    assert versions.serving_version(str(tmp_path)) == "1700000100"
    assert versions.serving_version(str(tmp_path / "missing")) is None


@pytest.fixture(scope="module")
def stores_runs(shipped_rows, tmp_path_factory):
    base = tmp_path_factory.mktemp("stores")
    config = configs.load(
        home=base / "home",
        spans_root=base / "spans",
        train_steps=100,
        eval_steps=5,
        history="stores",
        user_code="installed",
    )
    spans_io.write_span(config.spans_root, 1, shipped_rows[:SMALL_SPAN_ROWS])
    spans_io.write_span(config.spans_root, 2, shipped_rows[SMALL_SPAN_ROWS : 2 * SMALL_SPAN_ROWS])
    results = {"first": local_run.run(config.replace(span=1))}
    results["versions_after_first"] = versions.ready_versions(config.serving_root_uri)
    results["unchanged"] = local_run.run(config.replace(span=1))
    results["versions_after_unchanged"] = versions.ready_versions(config.serving_root_uri)
    results["second"] = local_run.run(config.replace(span=2))
    return config, results


def test_first_stores_run_is_blessed_without_a_baseline_and_pushed(stores_runs):
    _, results = stores_runs
    first = results["first"]
    assert first.ok, first.error
    assert first.window_spans == [1] and first.blessed and first.evaluation.baseline == {}
    assert len(results["versions_after_first"]) == 1
    assert "baseline_span" not in first.drift  # no earlier validated span: nothing to drift from
    assert not [s for s in first.drift["scores"] if s["comparison"] == "drift"]


def test_an_unchanged_stores_rerun_is_fully_cached_and_pushes_nothing(stores_runs):
    _, results = stores_runs
    unchanged = results["unchanged"]
    assert unchanged.ok, unchanged.error
    assert {status for _, status, _ in unchanged.timings} == {"cached"}
    assert results["versions_after_unchanged"] == results["versions_after_first"]


def test_the_next_span_trains_on_the_window_and_is_compared_with_the_pushed_model(stores_runs):
    config, results = stores_runs
    second = results["second"]
    assert second.ok, second.error
    assert second.span == 2 and second.window_spans == [1, 2]
    assert second.drift["baseline_span"] == 1  # the previous validated span, from the index
    measures = {(s["feature"], s["measure"]) for s in second.drift["scores"] if s["comparison"] == "drift"}
    assert ("fare", "JENSEN_SHANNON_DIVERGENCE") in measures and ("payment_type", "L_INFINITY") in measures
    assert second.evaluation.baseline  # compared with span 1's pushed model
    found = lineage.for_config(config)
    assert found.version == versions.serving_version(config.serving_root_uri) != results["versions_after_first"][0]
    assert [s.span for s in found.spans] == [1, 2]  # through the window's sources, back to each gate
    assert found.baseline_version == results["versions_after_first"][0]  # the version PreviousPushedModel copied
    assert "installed, code" in found.trainer_code


def test_the_stores_drift_baseline_is_the_previous_span_of_the_run_s_namespace(tmp_path):
    from pipeline.components.previous_statistics import PreviousValidatedStatistics

    index = str(tmp_path / "index")
    for span, namespace in ((1, None), (2, None), (1, spans_io.FEEDBACK)):
        statistics = _statistics(tmp_path / (namespace or "upstream"), span)
        statistics.set_string_custom_property(PLAUSIBILITY_PROPERTY, json.dumps({"fare_per_mile": 4.5 + span}))
        os.makedirs(os.path.join(statistics.uri, "Split-train"))
        span_window.record(index, _validated(tmp_path, span, namespace=namespace), statistics)
    choose = PreviousValidatedStatistics.EXECUTOR_SPEC.executor_class._FUNCTION

    def baseline(span: int, namespace: str) -> int | None:
        current, output = standard_artifacts.Examples(), standard_artifacts.ExampleStatistics()
        current.set_int_custom_property("span", span)
        output.uri = str(tmp_path / f"out-{namespace}-{span}")
        choose(current=current, statistics=output, index_uri=index, namespace=namespace)
        outputs[(span, namespace)] = output
        return output.get_int_custom_property("span") if output.has_custom_property("span") else None

    outputs: dict = {}
    assert baseline(3, spans_io.UPSTREAM) == 2
    # DataGate's plausibility measures of the baseline travel with it (the next span's sentence names them)
    assert json.loads(outputs[(3, spans_io.UPSTREAM)].get_string_custom_property(PLAUSIBILITY_PROPERTY)) == {"fare_per_mile": 6.5}
    assert baseline(3, spans_io.FEEDBACK) == 1  # feedback span 3 is compared with feedback span 1, not upstream span 2
    assert baseline(1, spans_io.FEEDBACK) is None  # the first feedback span has no baseline
