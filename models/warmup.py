"""Real examples that travel with an exported model: TF Serving's warmup requests.

The export writes up to WARMUP_EXAMPLES examples of the eval split (serving features only, each
with every feature serving_default requires) into `assets.extra/tf_serving_warmup_requests`, the
file TF Serving replays before a version serves: PredictionLog records, each one PredictRequest of
one example. TF Serving warms up with them; this project's server checks its folded model call on
them (models/probes.py), so the fold is compared on real rows, not only on synthetic ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from models import features

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
WARMUP_EXAMPLES = 64


def write(model_dir: str | Path, examples: Iterable[bytes]) -> int:
    """Write `examples` (serialized tf.Examples) as `model_dir`'s warmup requests; how many."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = Path(model_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for serialized in examples:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([serialized]))
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
            count += 1
    return count


def read(model_dir: str | Path) -> list[bytes]:
    """The serialized tf.Examples of `model_dir`'s warmup requests (none if it has no such file)."""
    path = Path(model_dir) / WARMUP_FILE
    if not path.exists():
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    found = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for tensor in log.predict_log.request.inputs.values():
            found.extend(tensor.string_val)
    return found


def eval_examples(file_patterns: list[str], required: Iterable[str], count: int = WARMUP_EXAMPLES) -> list[bytes]:
    """The first `count` examples of the eval split's files (sorted) that carry every `required`
    feature, as a client sends them: serving features only (no label source)."""
    import tensorflow as tf

    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    needed = set(required)
    found = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        present = {name for name, feature in example.features.feature.items() if _has_value(feature)}
        if not needed <= present:
            continue
        for name in list(example.features.feature):
            if name not in features.active().serving_features:
                del example.features.feature[name]
        found.append(example.SerializeToString())
        if len(found) == count:
            break
    return found


def _has_value(feature: Any) -> bool:
    kind = feature.WhichOneof("kind")
    return kind is not None and len(getattr(feature, kind).value) > 0
