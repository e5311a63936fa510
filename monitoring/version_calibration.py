"""The calibration of a served version, from its own eval split, computed on first need and kept.

The eval rows are the version's: ML Metadata's lineage of the Model its push record names
(metadata/lineage.py `training_spans`) gives the examples of every span of its training window, and their `Split-eval` is what the Evaluator scored.
The version's SavedModel answers them through the serving code (models/saved_model.py), on the
examples a client could send (every feature a request must carry); each row's label is the
contract's rule over its raw columns. monitoring/calibration.py checks and calibrates; the result is
written atomically to `<home>/monitoring/calibration/<version>.json`, so `conveyor monitor` and the
CT controller pay it (a model load, a few seconds) once per version. Outside the TFX DAG on purpose:
a version pushed by any run, before this existed too, is calibrated the same way.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from data import spans_io
from models import features
from models.features import CLASS_KEY, PROBABILITIES_KEY, PROBABILITY_KEY
from monitoring.calibration import FORMAT, Calibration, calibrate
from pipeline.configs import PipelineConfig
from schema import versions as schema_versions

SPLIT = "eval"
BATCH = 1024


def cache_path(config: PipelineConfig, version: str) -> Path:
    return config.monitoring_root / "calibration" / f"{version}.json"


def eval_examples(config: PipelineConfig, version: str) -> tuple[list[bytes], str]:
    """The serialized eval examples of `version`'s training window, and where they are; LookupError
    saying why when lineage does not name them."""
    import tensorflow as tf

    from metadata import lineage

    spans = lineage.training_spans(config, version)
    files = []
    for span in spans:
        files += sorted(tf.io.gfile.glob(os.path.join(span.examples_uri, f"Split-{SPLIT}", "*")))
    if not files:
        raise LookupError(f"version {version}'s lineage names no {SPLIT} examples")
    examples = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return examples, f"{SPLIT} split of span(s) {', '.join(s.label for s in spans)} ({len(files)} files)"


def compute(config: PipelineConfig, version: str) -> Calibration:
    """Calibrate `version` from its eval examples (LookupError when they cannot be found)."""
    from models.instances import FeatureRules, Instance, from_example
    from models.saved_model import LoadedModel

    examples, source = eval_examples(config, version)
    label = features.active().label
    required = FeatureRules.from_schema(schema_versions.in_force(config.home, config.schema_path)).required
    kept, labels = [], []
    for serialized in examples:
        row = from_example(serialized)
        if required <= row.keys() and all(row.get(c) is not None for c in label.reads):
            kept.append(serialized)
            labels.append(label.of_row(row))
    model = LoadedModel.load(os.path.join(config.serving_root_uri, version), version)  # type: ignore[arg-type]  # a URI too
    answers = []
    for start in range(0, len(kept), BATCH):
        answers += model.predict([Instance(e, {}) for e in kept[start : start + BATCH]])
    if label.multiclass:
        scores = [max(a[PROBABILITIES_KEY]) for a in answers]
        outcomes = [int(a[CLASS_KEY] == y) for a, y in zip(answers, labels)]
    else:
        scores = [float(a[PROBABILITY_KEY]) for a in answers]
        outcomes = labels
    source += f": {len(kept)} of {len(examples)} rows a client could send, with their label"
    return calibrate(version, scores, outcomes, labels, label.class_names, label.multiclass, config.cbpe_min_class_rows, source)


def for_version(config: PipelineConfig, version: str | None) -> tuple[Calibration | None, str | None]:
    """(the version's calibration, None), cached; or (None, why there is none)."""
    if version is None:
        return None, "no model version answered and none is pushed"
    path = cache_path(config, version)
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("format") == FORMAT and data.get("min_class_rows") == config.cbpe_min_class_rows:
                return Calibration.from_json(data), None
        except (ValueError, TypeError):
            pass  # not one of ours (a torn write cannot happen: it is replaced atomically): computed again
        # also computed again when checked with another cbpe_min_class_rows
    try:
        found = compute(config, version)
    except Exception as exc:  # lineage, the eval files or the model unreadable: the estimate says why, monitoring goes on
        return None, f"no calibration of version {version}: {exc}"
    spans_io.write_text(path, json.dumps(found.to_json(), indent=1) + "\n")
    return found, None
