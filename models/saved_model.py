"""One loaded SavedModel version and how it answers a batch of instances."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from models import probes, signatures, warmup
from models.features import CLASS_KEY, PROBABILITIES_KEY, PROBABILITY_KEY
from models.instances import Instance
from speedups import folded_call

SIGNATURE = signatures.DEFAULT  # the one the model is called through; the others answer from it


class PredictionError(RuntimeError):
    """The model answered something that is not a prediction (the model's fault)."""


class RejectedInput(PredictionError):
    """The model refused the instances (the request's fault)."""


@dataclass
class LoadedModel:
    version: str
    path: Path
    saved_model: Any  # the object tf.saved_model.load returned (kept alive for the signature)
    call: Any  # serving_default traced as one concrete function, or folded: call(examples) -> outputs
    folded: bool = False  # call is the folded graph (speedups/folded_call.py)
    served: frozenset[str] = frozenset({SIGNATURE})  # the signatures of models/signatures.METHODS it has

    @classmethod
    def load(cls, path: Path, version: str | None = None) -> "LoadedModel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        if SIGNATURE not in loaded.signatures:
            raise PredictionError(f"{path} has no {SIGNATURE!r} signature (has: {sorted(loaded.signatures)})")
        served = frozenset(name for name in signatures.METHODS if name in loaded.signatures)
        return cls(version or Path(path).name, Path(path), loaded, _plain_call(loaded.signatures[SIGNATURE]), served=served)

    def fold(self, examples: list[bytes] = ()) -> bool:
        """From now on answer through the folded graph, if it answers bit for bit what `call` does
        on the probes (models/probes.py: built from the version's warmup requests and `examples`,
        real serialized tf.Examples; speedups/folded_call.py; 0.5-2 s); True if it does. Safe
        while other threads predict."""
        if not self.folded:
            real = warmup.read(self.path) + list(examples)
            faster = folded_call.folded(self.call, probes.probe_batches(real), f"version {self.version}")
            if faster is not None:
                self.call, self.folded = faster, True
        return self.folded

    def predict(self, instances: list[Instance]) -> list[dict[str, Any]]:
        """One {probability, predicted_class} per instance, in order ({probabilities, predicted_class}
        for a multi-class model: one probability per class)."""
        import tensorflow as tf

        batch = tf.constant([i.serialized for i in instances])
        try:
            outputs = self.call(batch)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise RejectedInput(f"model {self.version} rejected the input: {_reason(exc)}") from exc
        except tf.errors.OpError as exc:
            raise PredictionError(f"model {self.version} failed: {_reason(exc)}") from exc
        key = PROBABILITIES_KEY if PROBABILITIES_KEY in outputs else PROBABILITY_KEY
        try:
            scores = outputs[key].numpy()
            predicted = outputs[CLASS_KEY].numpy().reshape(-1).tolist()
        except KeyError as exc:
            raise PredictionError(f"model {self.version} does not output {exc}") from exc
        probability = (scores if key == PROBABILITIES_KEY else scores.reshape(-1)).tolist()
        if len(probability) != len(instances) or len(predicted) != len(instances):
            raise PredictionError(f"model {self.version} answered {len(probability)} predictions for {len(instances)} instances")
        flat = [p for row in probability for p in row] if key == PROBABILITIES_KEY else probability
        bad = [p for p in flat if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
        if bad:
            raise PredictionError(f"model {self.version} answered probabilities outside [0, 1]: {bad[:3]}")
        return [{key: p, CLASS_KEY: int(c)} for p, c in zip(probability, predicted)]

    def probabilities(self, serialized: Sequence[bytes], batch_size: int = 4096) -> list[float]:
        """The probability of each serialized tf.Example, asked `batch_size` at a time through the
        same call and checks as `predict` (models/attribution.py's Predict)."""
        found: list[float] = []
        for start in range(0, len(serialized), batch_size):
            batch = [Instance(e, {}) for e in serialized[start : start + batch_size]]
            found.extend(float(p[PROBABILITY_KEY]) for p in self.predict(batch))
        return found

    def signature_defs(self) -> dict[str, Any]:
        """The SignatureDef protos of the signatures it serves, as saved_model.pb has them."""
        found = signatures.signature_defs(self.path)
        return {name: found[name] for name in signatures.METHODS if name in self.served}


def _plain_call(signature: Any) -> Any:
    """`signature` wrapped in a tf.function with its input spec and traced once.

    The restored signature's own __call__ re-checks its structured signature and resolves its
    ~40 captured variable handles through the loader's wrapper on every call; the concrete
    function of this wrapper calls the same graph with the same variables, positionally, for
    about 100 us (10-25 %) less per call (docs/serving.md, Benchmark).
    """
    import tensorflow as tf

    (name, spec), = signature.structured_input_signature[1].items()
    return tf.function(lambda examples: signature(**{name: examples}), input_signature=[spec]).get_concrete_function()


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")


def _reason(exc: Exception) -> str:
    """The line of a TensorFlow error that says what was wrong (not where the graph ran it)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    useful = [line for line in lines if line and not line.startswith(_TF_NOISE)]
    return useful[0] if useful else type(exc).__name__
