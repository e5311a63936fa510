"""A scripted continuous-training scenario: every trigger, fired and not fired, on generated data.

    conveyor ct demo [--home DIR]

Runs the controller on a scratch home with a simulated clock and prints each decision. The test
suite runs the same scenario (tests/test_ct.py) and asserts every step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ct import controller, feedback
from ct.decisions import Decision
from ct.launcher import Launch
from data import generator, spans_io
from models import features
from pipeline.configs import PipelineConfig

HOUR = 3600.0


@dataclass
class Step:
    name: str
    decision: Decision


def _served_feedback(config: PipelineConfig, rows: list[dict], labelled: bool, model_path: str) -> list[dict]:
    """`rows` as served traffic: the pushed model's real predictions, with or without arrived tips."""
    import tensorflow as tf

    from models.examples import serialize
    from models.model import PROBABILITY_KEY

    signature = tf.saved_model.load(model_path).signatures["serving_default"]
    probabilities = signature(examples=tf.constant(serialize(rows)))[PROBABILITY_KEY].numpy()
    return [
        {**row, features.TIPS_KEY: row[features.TIPS_KEY] if labelled else "", "request_id": f"r{i}",
         "model_version": model_path.rstrip("/").rsplit("/", 1)[-1], "probability": float(p)}
        for i, (row, p) in enumerate(zip(rows, probabilities))
    ]


def run(
    config: PipelineConfig,
    launch: Launch,
    rows_per_span: int = 400,
    seed: int = 0,
    on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    reference = generator.shipped_reference()
    clock = [time.time()]
    steps: list[Step] = []

    def tick(name: str, advance_hours: float = 1.0, reason: str | None = None) -> Decision:
        clock[0] += advance_hours * HOUR
        step = Step(name, controller.tick(config, launch, now=clock[0], reason=reason))
        steps.append(step)
        if on_step:
            on_step(step)
        return step.decision

    def span(number: int, problem: str | None = None) -> None:
        generator.write_generated_span(config.spans_root, number, reference, rows_per_span, seed + number, problem)

    span(1)
    first = tick("span 1 arrives")
    tick("nothing changed")
    tick("operator asks for a run", reason="manual check")
    tick("a day passes", advance_hours=config.ct_schedule_hours + 1)
    span(2)
    tick("span 2 arrives")
    span(3, "dropped_column")
    tick("span 3 arrives without its fare column")
    span(4, "vanished_payment_type")
    tick("span 4 arrives with no credit-card trips")
    served = first.detail.split("pushed: ")[1].split(";")[0] if first.detail else ""
    drifted = generator.generate(reference, rows_per_span, seed + 100, "fare_drift")
    feedback.write(config, "traffic-1", _served_feedback(config, drifted, labelled=False, model_path=served))
    tick("served traffic drifts (no labels yet)")
    tick("same traffic, next tick")
    shifted = generator.generate(reference, max(rows_per_span, config.ct_min_feedback), seed + 200, "label_shift")
    feedback.write(config, "traffic-1", _served_feedback(config, shifted, labelled=True, model_path=served))
    tick("labels arrive: far fewer big tippers than predicted")
    tick("nothing changed")
    broken = spans_io.span_dir(config.spans_root, 6) / spans_io.SPAN_FILE
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text(",".join(features.CSV_COLUMNS) + "\n1,2,3\n")  # rows shorter than the header
    tick("span 6 arrives malformed")
    tick("next tick")
    tick("next tick again")
    return steps
