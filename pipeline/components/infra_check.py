"""InfraCheck: the candidate model must load and answer through the serving code before Pusher.

TFX's InfraValidator needs TF Serving binaries or docker and is not supported by the Kubeflow V2
runner, so this component does the same job with the code the server runs (serving/): it loads the
candidate SavedModel with models.saved_model.LoadedModel and asks it about real examples of this run's
eval split (those a client could send: with every feature a request must carry), sent both as raw
JSON features and as base64 tf.Examples, exactly as a client would.
The model passes when every request is accepted, every probability is in [0, 1], and both forms
agree. The model is asked through the call the server will use: folded when it folds
(speedups/folded_call.py). The InfraBlessing output carries `blessed` 1/0 (what TFX's Pusher reads),
`folded_call` 1/0 and, on failure, `failure` with the reason; a model that fails is never pushed.
"""
# No `from __future__ import annotations`: TFX reads the real type hints of InfraCheck.
import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from models import features
from models.features import PROBABILITIES_KEY, PROBABILITY_KEY
from pipeline.artifact_properties import BLESSED_KEY, CHECKED_KEY, FAILURE_KEY, FOLDED_KEY

SAMPLE_SPLIT = "eval"
SCHEMA_FILE = "schema.pbtxt"
# Largest difference between the JSON and the tf.Example answer for the same example.
AGREEMENT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class InfraResult:
    ok: bool
    checked: int
    failure: Optional[str] = None
    folded: bool = False  # the answers came through the folded call


def sample_examples(
    examples_uri: str, split: str, count: int, keep: Callable[[bytes], bool] = lambda serialized: True
) -> List[bytes]:
    """The first `count` serialized tf.Examples of `split` in an Examples artifact that `keep` accepts."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"no {split} examples under {examples_uri}")
    samples = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        if keep(record.numpy()):
            samples.append(record.numpy())
            if len(samples) == count:
                break
    return samples


def sendable(schema_path: Path) -> Callable[[bytes], bool]:
    """Whether a client could send an example: it has every feature a request must carry. DataGate
    tolerates a few rows with empty cells in such features; the server would refuse them."""
    from models.instances import FeatureRules, from_example

    required = FeatureRules.from_schema(schema_path).required
    return lambda serialized: required <= from_example(serialized).keys()


def check_model(model_dir: Path, samples: List[bytes], schema_path: Path) -> InfraResult:
    """Load `model_dir` with the serving code and ask it about `samples`; never raises."""
    import tensorflow as tf

    from models import features
    from models.instances import FeatureRules, InstanceError, from_example, parse_instances
    from models.saved_model import LoadedModel, PredictionError

    if not samples:
        return InfraResult(False, 0, "no sample examples to send")
    try:
        model = LoadedModel.load(model_dir, "candidate")
        model.fold(samples)  # probed on these real eval rows too
    except Exception as exc:  # any load failure means: do not push
        return InfraResult(False, 0, f"the model does not load: {type(exc).__name__}: {exc}")
    rules = FeatureRules.from_schema(schema_path)
    rows = [{k: v for k, v in from_example(s).items() if k in features.active().serving_features} for s in samples]
    b64 = []
    for serialized in samples:  # the real example as a client would send it: without the label source
        example = tf.train.Example.FromString(serialized)
        for name in list(example.features.feature):
            if name not in features.active().serving_features:
                del example.features.feature[name]
        b64.append({"b64": base64.b64encode(example.SerializeToString()).decode()})
    answers = []
    for form, instances in (("JSON features", rows), ("base64 tf.Examples", b64)):
        try:
            payload = json.loads(json.dumps({"instances": instances}))  # what goes over the wire
            answers.append(model.predict(parse_instances(payload, rules, max_instances=len(instances))))
        except (InstanceError, PredictionError) as exc:
            return InfraResult(False, len(samples), f"request with {form} failed: {exc}")
    as_json, as_b64 = answers
    worst = max(abs(x - y) for a, b in zip(as_json, as_b64) for x, y in zip(_scores(a), _scores(b)))
    if worst > AGREEMENT_TOLERANCE:
        return InfraResult(False, len(samples), f"JSON and tf.Example requests disagree by up to {worst:.3g}")
    return InfraResult(True, len(samples), folded=model.folded)


def _scores(answer: dict) -> list[float]:
    """An answer's probabilities: the one of a binary model, each class's of a multi-class one."""
    return answer[PROBABILITIES_KEY] if PROBABILITIES_KEY in answer else [answer[PROBABILITY_KEY]]


@tfx.dsl.components.component
def InfraCheck(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    infra_blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    sample_size: tfx.dsl.components.Parameter[int] = 32,
    contract: tfx.dsl.components.Parameter[str] = "",
) -> None:
    features.activate_from(json.loads(contract or "{}"))  # the pipeline's, where its file is not (Kubeflow)
    split = SAMPLE_SPLIT if SAMPLE_SPLIT in artifact_utils.decode_split_names(examples.split_names) else None
    if split is None:
        result = InfraResult(False, 0, f"the examples have no {SAMPLE_SPLIT!r} split")
    else:
        schema_path = Path(schema.uri) / SCHEMA_FILE
        samples = sample_examples(examples.uri, split, sample_size, keep=sendable(schema_path))
        result = check_model(Path(path_utils.serving_model_path(model.uri)), samples, schema_path)
    infra_blessing.set_int_custom_property(BLESSED_KEY, int(result.ok))
    infra_blessing.set_int_custom_property(CHECKED_KEY, result.checked)
    infra_blessing.set_int_custom_property(FOLDED_KEY, int(result.folded))
    if result.failure:
        infra_blessing.set_string_custom_property(FAILURE_KEY, result.failure)
    marker = "INFRA_BLESSED" if result.ok else "INFRA_NOT_BLESSED"
    io_utils.write_string_file(os.path.join(infra_blessing.uri, marker), result.failure or "")
