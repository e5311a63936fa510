"""The folded model call: used for a real pushed model, bit for bit the SavedModel's answers, and
refused when it is not."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.instances import Instance, from_row, to_example
from models.saved_model import LoadedModel
from pipeline import versions
from serving.host import ModelHost
from speedups import folded_call
from tests.serving_helpers import copy_home, wait_for


@pytest.fixture(scope="module")
def pushed(small_run):
    config, _ = small_run
    version = versions.serving_version(config.serving_root)
    return config.serving_root / version


def _bytes(outputs) -> dict[str, bytes]:
    return {key: value.numpy().tobytes() for key, value in outputs.items()}


def test_the_folded_call_answers_exactly_what_the_saved_model_answers(pushed, shipped_rows):
    model = LoadedModel.load(pushed)
    assert model.fold() and model.folded, "the folded call was refused"
    signature = model.saved_model.signatures["serving_default"]
    examples = [to_example(from_row(row)) for row in shipped_rows[:2048]]
    batches = [examples[i : i + 1] for i in range(256)] + [examples[i : i + 8] for i in range(0, 2048, 8)]
    batches += [examples[i : i + 256] for i in range(0, 2048, 256)]
    for batch in batches:
        tensor = tf.constant(batch)
        assert _bytes(model.call(tensor)) == _bytes(signature(examples=tensor))


def _pool_ticks() -> int:
    """CPU clock ticks used so far by TensorFlow's inter-op threads (named tf_Compute) in this process."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "tf_Compute":
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:  # the thread ended meanwhile
            continue
    return total


def test_the_folded_call_runs_in_the_calling_thread(pushed, shipped_rows):
    """Called as one op, the folded graph hands no work to the inter-op threads; the traced call,
    a function call, does (the control that shows the measure sees them)."""
    model = LoadedModel.load(pushed)
    traced = model.call
    assert model.fold()
    batch = tf.constant([to_example(from_row(shipped_rows[0]))])

    def pool_ticks(call) -> int:
        for _ in range(50):
            call(batch)
        before = _pool_ticks()
        for _ in range(1000):
            call(batch)
        return _pool_ticks() - before

    on_pool_traced, on_pool_folded = pool_ticks(traced), pool_ticks(model.call)
    assert on_pool_traced >= 10, on_pool_traced
    assert on_pool_folded * 10 <= on_pool_traced, (on_pool_folded, on_pool_traced)


def test_concurrent_folded_calls_answer_exactly(pushed, shipped_rows):
    """The server's event loop and its predict thread (large batches) may call it at the same time."""
    model = LoadedModel.load(pushed)
    assert model.fold()
    examples = [to_example(from_row(row)) for row in shipped_rows[:256]]
    batches = [tf.constant(examples[:size]) for size in (1, 8, 64, 256)]
    expected = [_bytes(model.call(batch)) for batch in batches]
    answers: list[list[dict]] = [[] for _ in batches]

    def ask(i: int) -> None:
        for _ in range(30):
            answers[i].append(_bytes(model.call(batches[i])))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [len(a) for a in answers] == [30] * len(batches)
    assert all(answer == expected[i] for i, got in enumerate(answers) for answer in got)


def _refused(pushed, monkeypatch, caplog, fold) -> LoadedModel:
    """A model whose fold() ran with `fold` in place of folded_call._fold: it must keep its traced call."""
    monkeypatch.setattr(folded_call, "_fold", fold)
    with caplog.at_level(logging.WARNING, logger=folded_call.__name__):
        model = LoadedModel.load(pushed)
        assert not model.fold()
    assert isinstance(model.call, tf.types.experimental.ConcreteFunction) and not model.folded
    return model


def test_a_folded_call_that_differs_in_one_bit_is_refused(pushed, monkeypatch, caplog):
    fold = folded_call._fold

    def off_by_one_ulp(call):
        run = fold(call)

        def nudged(examples):
            outputs = dict(run(examples))
            probability = outputs["probability"].numpy()
            probability.flat[-1] = np.nextafter(probability.flat[-1], np.float32(1))
            outputs["probability"] = tf.constant(probability)
            return outputs

        return nudged

    _refused(pushed, monkeypatch, caplog, off_by_one_ulp)
    assert f"version {pushed.name}: the folded model call does not answer exactly" in caplog.text


def test_a_call_that_cannot_be_folded_keeps_the_traced_call(pushed, shipped_rows, monkeypatch, caplog):
    def broken(call):
        raise ValueError("no graph")

    model = _refused(pushed, monkeypatch, caplog, broken)
    assert f"version {pushed.name}: the model call could not be folded (ValueError: no graph)" in caplog.text
    feats = [from_row(row) for row in shipped_rows[:8]]
    answers = model.predict([Instance(to_example(f), f) for f in feats])
    expected = model.saved_model.signatures["serving_default"](examples=tf.constant([to_example(f) for f in feats]))
    assert [a["probability"] for a in answers] == expected["probability"].numpy().tolist()


def test_a_version_serves_once_loaded_and_then_through_its_folded_call(pushed, caplog):
    host = ModelHost(pushed.parent, poll_seconds=60)
    try:
        with caplog.at_level(logging.INFO, logger="serving.host"):
            assert host.refresh()
            model = host.current()
            wait_for(lambda: model.folded, timeout=60, what="the serving version's folded call")
        assert host.current() is model
        said = [record.getMessage() for record in caplog.records]
        swapped = said.index(f"serving version {pushed.name} (was none)")
        assert any(f"version {pushed.name} answers through its folded graph" in line for line in said[swapped + 1:]), said
    finally:
        host.close()


def test_only_the_serving_version_is_folded(small_run, tmp_path):
    """A version a client asks for by number answers through its traced call: TensorFlow keeps
    memory for every folded version, and such requests must not make it grow."""
    config = copy_home(small_run, tmp_path / "home")
    serving = versions.serving_version(config.serving_root)
    older = versions.republish(config.serving_root, serving, str(int(serving) - 1)).name
    host = ModelHost(config.serving_root, poll_seconds=60)
    try:
        assert host.refresh()
        wait_for(lambda: host.current().folded, timeout=60, what="the serving version's folded call")
        extra = host.version(older).result(timeout=60)
        end = time.monotonic() + 3  # a fold, had one been queued, takes 0.3-2 s
        while time.monotonic() < end:
            assert not extra.folded
            time.sleep(0.05)
    finally:
        host.close()


def test_folding_while_the_traced_call_answers_changes_no_answer(pushed, shipped_rows):
    """The host folds a version that already serves: requests keep coming during the conversion."""
    model = LoadedModel.load(pushed)
    feats = [from_row(row) for row in shipped_rows[:16]]
    instances = [Instance(to_example(f), f) for f in feats]
    expected = model.predict(instances)
    answers, errors, stop = [], [], threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                answers.append(model.predict(instances))
            except Exception as exc:
                errors.append(exc)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        assert model.fold()
        for _ in range(20):
            answers.append(model.predict(instances))
    finally:
        stop.set()
        asker.join(30)
    assert not errors, errors[:3]
    assert len(answers) > 20 and all(answer == expected for answer in answers)


def _latitude_buckets(model: LoadedModel, batch) -> set[int]:
    """The pickup_latitude buckets the model's transform puts the examples of `batch` in."""
    examples = []
    for serialized in batch.numpy().tolist():
        example = tf.train.Example.FromString(serialized)
        example.features.feature["tips"].float_list.value.append(0.0)  # transform_features reads the label's source
        examples.append(example.SerializeToString())
    transformed = model.saved_model.signatures["transform_features"](examples=tf.constant(examples))
    return set(transformed["pickup_latitude_xf"].numpy().reshape(-1).tolist())


def test_the_fold_is_probed_with_real_rows_odd_batches_and_missing_optional_features(pushed):
    """The probes come from the version's warmup requests (real eval rows the export wrote): they
    cross the latitude buckets (the synthetic probes, 0-100, fall below or above the Chicago box:
    the first or the last bucket), include rows without their optional features, and batches of
    odd sizes."""
    from models import probes, warmup

    real = warmup.read(pushed)
    assert len(real) == warmup.WARMUP_EXAMPLES
    model = LoadedModel.load(pushed)
    batches = probes.probe_batches(real)
    sizes = {int(batch.shape[0]) for batch in batches}
    assert set(probes.ODD_SIZES) <= sizes and {1, 8} <= sizes
    everything = batches[-1]
    assert len(_latitude_buckets(model, everything)) >= 8  # of 10
    synthetic = probes.probe_batches([])[-1]  # what the fold was checked on before: the edge buckets but one probe
    assert sum(len(_latitude_buckets(model, synthetic[i : i + 1]) - {0, 9}) for i in range(len(synthetic))) <= 1
    kept = [set(tf.train.Example.FromString(s).features.feature) for s in everything.numpy().tolist()]
    optional = {"company", "dropoff_latitude", "dropoff_longitude", "dropoff_census_tract", "dropoff_community_area"}
    assert any(not (features & optional) for features in kept)


def test_a_folded_call_wrong_only_on_rows_missing_an_optional_feature_is_refused(pushed, monkeypatch, caplog):
    fold = folded_call._fold

    def wrong_without_company(call):
        run = fold(call)

        def answer(examples):
            outputs = dict(run(examples))
            missing = [b"company" not in serialized for serialized in examples.numpy().tolist()]
            if any(missing):
                outputs["probability"] = tf.where(missing, outputs["probability"] * 0.5, outputs["probability"])
            return outputs

        return answer

    _refused(pushed, monkeypatch, caplog, wrong_without_company)


def test_a_folded_call_wrong_only_on_odd_batch_sizes_is_refused(pushed, monkeypatch, caplog):
    fold = folded_call._fold

    def wrong_on_odd_batches(call):
        run = fold(call)

        def answer(examples):
            outputs = dict(run(examples))
            if examples.shape[0] % 2 and examples.shape[0] > 1:
                outputs["probability"] = outputs["probability"] * 0.5
            return outputs

        return answer

    _refused(pushed, monkeypatch, caplog, wrong_on_odd_batches)
