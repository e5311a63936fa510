"""The stores form's hyperparameters (pipeline/components/tuned_hyperparameters.py) and how ML
Metadata readers trace them (metadata/hyperparameters.py): the newest search of the tuning index
copied with the URI it came from, none before the first search, and a copy traced back to the
Tuner's run in a real ML Metadata store (SQLite in a temp folder)."""
from __future__ import annotations

import json

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from metadata import hyperparameters, runs
from pipeline import artifact_properties as props
from pipeline.components import tuned_hyperparameters, tuner

PROPERTIES = {props.TUNED_VALUES_PROPERTY: json.dumps({"dropout": 0.3}), props.OBJECTIVE_PROPERTY: "val_auc",
              props.BEST_SCORE_PROPERTY: 0.95, props.DEFAULT_SCORE_PROPERTY: 0.94, props.TRIALS_PROPERTY: 3,
              props.MAX_TRIALS_PROPERTY: 3, props.ENDED_BY_PROPERTY: "trials"}


def _search(folder, name: str, values: dict) -> str:
    (folder / name).mkdir(parents=True)
    (folder / name / tuned_hyperparameters.BEST_FILE).write_text(json.dumps({"space": [], "values": values}))
    return str(folder / name)


def _output(folder) -> standard_artifacts.HyperParameters:
    artifact = standard_artifacts.HyperParameters()
    artifact.uri = str(folder / "copy")
    return artifact


def test_before_any_search_the_copy_holds_no_values(tmp_path):
    copied = _output(tmp_path)
    tuned_hyperparameters.copy_newest(str(tmp_path / "index"), copied)
    assert json.loads((tmp_path / "copy" / tuned_hyperparameters.BEST_FILE).read_text()) == {"space": [], "values": {}}
    assert not copied.has_custom_property(props.TUNED_VALUES_PROPERTY)


def test_the_newest_search_of_the_index_is_copied_with_its_properties_and_source(tmp_path):
    index = str(tmp_path / "index")
    older, newer = _search(tmp_path, "a", {"dropout": 0.2}), _search(tmp_path, "b", {"dropout": 0.3})
    tuner.record(index, older, {**PROPERTIES, props.TUNED_VALUES_PROPERTY: json.dumps({"dropout": 0.2})})
    [entry] = (tmp_path / "index").iterdir()
    entry.rename(tmp_path / "index" / "100.json")  # an earlier search (names are milliseconds)
    tuner.record(index, newer, PROPERTIES)
    copied = _output(tmp_path)
    tuned_hyperparameters.copy_newest(index, copied)
    assert json.loads((tmp_path / "copy" / tuned_hyperparameters.BEST_FILE).read_text())["values"] == {"dropout": 0.3}
    assert copied.get_string_custom_property(props.TUNED_FROM_PROPERTY) == newer
    assert copied.get_int_custom_property(props.TRIALS_PROPERTY) == 3 and copied.get_float_custom_property(props.BEST_SCORE_PROPERTY) == 0.95


def _store(tmp_path) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    return metadata_store.MetadataStore(config)


def _context(store, type_name: str, name: str) -> metadata_store_pb2.Context:
    found = store.get_context_by_type_and_name(type_name, name)
    if found is not None:
        return found
    context = metadata_store_pb2.Context(type_id=store.put_context_type(metadata_store_pb2.ContextType(name=type_name)), name=name)
    context.id = store.put_contexts([context])[0]
    return context


def _execution(store, name: str, run: str, output: metadata_store_pb2.Artifact) -> int:
    """An execution of node `name` in pipeline run `run` that output `output` (as TFX records one)."""
    contexts = [_context(store, runs.NODE_CONTEXT, f"p.{name}"), _context(store, runs.PIPELINE_RUN_CONTEXT, run)]
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name=name))
    event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
    event.path.steps.add().key = "out"
    execution_id, _, _ = store.put_execution(metadata_store_pb2.Execution(type_id=execution_type), [(output, event)], contexts)
    return execution_id


def _artifact(store, uri: str, properties: dict) -> metadata_store_pb2.Artifact:
    artifact = metadata_store_pb2.Artifact(type_id=store.put_artifact_type(metadata_store_pb2.ArtifactType(name="HyperParameters")), uri=uri)
    for name, value in properties.items():
        field = {str: "string_value", int: "int_value", float: "double_value"}[type(value)]
        setattr(artifact.custom_properties[name], field, value)
    return artifact


def test_a_copy_is_traced_to_the_tuners_run_and_a_copy_of_none_reads_as_the_defaults(tmp_path):
    store = _store(tmp_path)
    _execution(store, "Tuner", "run-tune", _artifact(store, "/root/Tuner/best/7", PROPERTIES))
    copy = _artifact(store, "/root/latest/9", {**PROPERTIES, props.TUNED_FROM_PROPERTY: "/root/Tuner/best/7"})
    _execution(store, "latest_hyperparameters", "run-later", copy)
    [copied] = store.get_artifacts_by_uri("/root/latest/9")
    found = hyperparameters.tuning_of(store, copied)
    assert found.run_id == "run-tune" and found.values == {"dropout": 0.3} and (found.trials, found.best_score) == (3, 0.95)
    none = _artifact(store, "/root/latest/10", {})
    _execution(store, "latest_hyperparameters", "run-first", none)
    assert hyperparameters.tuning_of(store, store.get_artifacts_by_uri("/root/latest/10")[0]) is None
