"""The batches a folded model call must answer exactly as the traced call before it is used
(speedups/folded_call.py; LoadedModel.fold).

With real rows (the model's warmup requests, models/warmup.py, and whatever the caller adds, as
InfraCheck its eval examples): the rows themselves, each again without its optional features, and
rows mixing the real rows' values feature by feature (values spread as the data spreads them, so
every bucket boundary the data crosses is compared, in combinations the rows do not have).
Without any (a version exported before models carried warmup requests): synthetic rows, numbers
uniform in 0-100, which cover little of the latitude and longitude buckets. Either way up to
PROBE_COUNT instances, asked one at a time, in batches of odd sizes and of 8, and all together.
"""
from __future__ import annotations

import random
from typing import Any

from models import features
from models.instances import from_example, to_example

PROBE_COUNT = 256
SINGLES = 16
ODD_SIZES = (3, 5, 7, 13, 31)


def probe_batches(real: list[bytes], seed: int = 0) -> list[Any]:
    """Tensors of serialized probe instances (see the module's docstring)."""
    import tensorflow as tf

    rng = random.Random(seed)
    examples = _from_real(real, rng) if real else _synthetic(rng)
    batches = [examples[i : i + 1] for i in range(min(SINGLES, len(examples)))]
    start = 0
    for size in ODD_SIZES:
        batches.append(examples[start : start + size])
        start += size
    batches += [examples[i : i + 8] for i in range(0, min(64, len(examples)), 8)]
    batches.append(examples)
    return [tf.constant(batch) for batch in batches if batch]


def _from_real(real: list[bytes], rng: random.Random) -> list[bytes]:
    rows = [{k: v for k, v in from_example(s).items() if k in features.active().serving_features} for s in real]
    always = set.intersection(*(set(row) for row in rows))  # present in every row: treated as required
    stripped = [{k: v for k, v in row.items() if k in always} for row in rows]
    values: dict[str, list] = {}
    for row in rows:
        for name, value in row.items():
            values.setdefault(name, []).append(value)
    mixed = []
    while len(rows) + len(stripped) + len(mixed) < PROBE_COUNT:
        mixed.append({name: rng.choice(found) for name, found in values.items()
                      if name in always or rng.random() < len(found) / len(rows)})
    examples = [to_example(row) for row in rows + stripped + mixed]
    rng.shuffle(examples)
    return examples[:PROBE_COUNT]


def _synthetic(rng: random.Random) -> list[bytes]:
    values = {"INT": lambda: rng.randrange(0, 100), "FLOAT": lambda: rng.uniform(0.0, 100.0),
              "BYTES": lambda: rng.choice(("Cash", "Credit Card", "Unknown", "Flash Cab", "no such value"))}
    return [to_example({name: values[features.active().raw_types[name]]() for name in features.active().serving_features})
            for _ in range(PROBE_COUNT)]
