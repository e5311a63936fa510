"""ModelCard: after the Evaluator and InfraCheck, the card of the candidate (pipeline/model_card.py).

Its metrics per slice are the Evaluator's, with 95 % intervals from the Evaluator's own counts,
and TFDV summarises the window's training split (pipeline/card_metrics.py); the permutation
importance of each feature asks the candidate through its served signature (the serving runtime,
models/saved_model.py) once per feature on the window's eval examples (models/attribution.py), and
the attribution baseline the server's `:explain` uses is taken from the training split. The
Evaluator's records also give the baseline's figures and the verdict, InfraCheck's artifact its
verdict. The card (JSON and HTML) is
the ModelCard artifact; Publish copies it into the pushed version, with the version's name and date.
"""
from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, component_spec, standard_artifacts
from tfx.utils import io_utils, path_utils

from models import attribution, features
from models.instances import from_example
from pipeline import blessing_checks, card_data, card_metrics, evaluation, fairness, model_card, versions
from pipeline.artifact_properties import BLESSED_KEY, CHECKED_KEY, FAILURE_KEY, PUSHED_VERSION_PROPERTY
from pipeline.components.pushed_baseline import has_model
from pipeline.statistics_summary import feature_summaries

SETTINGS_KEY = "card_settings"
UNRECORDED_SHARE = 0.99  # a slice whose trips record a tip of 0 this often: its tips are not recorded


class ModelCardArtifact(types.Artifact):
    """A model card: model_card/model_card.json and model_card/model_card.html.

    Its type name is an import path of the class (pipeline/__init__.py): Publish reads it, and on
    Kubeflow Pipelines v2 / Vertex a task imports a custom input artifact's class by its type name,
    which must be `<module>.<Class>`."""

    TYPE_NAME = "pipeline.ModelCard"


def _infra(artifact: types.Artifact) -> dict[str, Any]:
    get = artifact.get_int_custom_property
    failure = artifact.get_string_custom_property(FAILURE_KEY) if artifact.has_custom_property(FAILURE_KEY) else ""
    return {"passed": get(BLESSED_KEY) == 1, "checked": get(CHECKED_KEY), "failure": failure}


def _baseline_version(baseline: list[types.Artifact], serving_root: str) -> str | None:
    """The pushed version the Evaluator's baseline was (None: no baseline, or never published)."""
    if not baseline or not has_model(baseline[0]):
        return None
    model = baseline[0]
    if model.has_custom_property(PUSHED_VERSION_PROPERTY):  # history "stores": a copy of the version
        return model.get_string_custom_property(PUSHED_VERSION_PROPERTY)
    return versions.version_of_model(serving_root, model.id)


def data_limitations(metrics: dict[str, dict[str, float]], train: list[dict[str, Any]], min_examples: int) -> list[str]:
    """What the data shows a reviewer must know: slices whose label is one class (and, when every
    training trip of the slice has a tip of 0, that the data records no tips there), and the
    slices too small to gate."""
    found, small = [], []
    for name in sorted(metrics, key=evaluation.slice_order):
        if name == evaluation.OVERALL:
            continue
        counts = metrics[name]
        positive, negative = evaluation.class_counts(counts)
        if positive + negative < min_examples:
            small.append(f"{name} ({positive + negative})")
            continue
        if min(positive, negative) > 0 or features.active().label.multiclass:  # one class: a binary label's concern
            continue
        key, _, value = name.partition("=")
        trips = [row for row in train if str(row.get(key)) == value]
        label = features.active().label  # the rule's value column (the taxi's tips) all 0: unrecorded
        zero = sum(row.get(label.value) == 0.0 for row in trips) if label.kind == "greater_than_fraction" else 0
        why = (
            f"; {zero:,} of its {len(trips):,} training trips record a tip of 0: the data barely records tips there, so "
            "the model learns only that such trips do not tip big" if trips and zero >= UNRECORDED_SHARE * len(trips) else ""
        )
        found.append(
            f"{name}: every one of its {positive + negative:,} eval examples is labelled {1 if positive else 0}{why}. Its "
            f"accuracy {counts.get('binary_accuracy', float('nan')):.3f} says nothing about the model; AUC, "
            f"{'recall and the false negative rate' if not positive else 'the false positive rate'} are undefined there."
        )
    if small:
        found.append(
            f"{len(small)} slices have fewer than {min_examples} eval examples; their figures are shown but not gated: {', '.join(small)}."
        )
    return found


class ModelCardExecutor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        from models.saved_model import LoadedModel

        settings = json.loads(exec_properties[SETTINGS_KEY])
        features.activate_from(settings.get("contract"))
        model = artifact_utils.get_single_instance(input_dict["model"])
        evaluated = artifact_utils.get_single_instance(input_dict["evaluation"])
        window = input_dict["examples"]
        out = artifact_utils.get_single_uri(output_dict["model_card"])

        eval_split, train_split = card_data.read_split(window, "eval"), card_data.read_split(window, "train")
        infra = _infra(artifact_utils.get_single_instance(input_dict["infra_blessing"]))
        # A candidate InfraCheck refused cannot answer through its served signature: its card says
        # why it has no permutation importance (its metrics are the Evaluator's, as every card's).
        unanswered = None if infra["passed"] else f"InfraCheck refused the candidate ({infra['failure'][:300]})"
        multiclass = features.active().label.multiclass
        if multiclass and unanswered is None:  # the importance is a drop in AUC
            unanswered = "permutation importance (the drop in AUC) is computed for a binary label only"
        loaded = LoadedModel.load(path_utils.serving_model_path(model.uri), "candidate")
        importance_auc, importance = (None, []) if unanswered else attribution.permutation_importance(
            card_data.rows(eval_split.all), card_data.labels(loaded.saved_model, eval_split.all), loaded.probabilities,
            settings["seed"])

        train_raw = [from_example(e) for e in train_split.all]
        spans = []
        for label, train, held_out in zip(train_split.spans, train_split.examples, eval_split.examples):
            span_labels = card_data.labels(loaded.saved_model, train)
            rate = sum(span_labels) / len(span_labels) if span_labels and not multiclass else None
            spans.append(model_card.SpanFacts(label, len(train), len(held_out), rate))

        result = evaluation.load_evaluation(evaluated.uri)
        gate = evaluation.Gate(**settings["gate"])
        estimates = card_metrics.estimates(result.metrics)
        facts = model_card.CardFacts(
            model_name=settings["model_name"],
            pipeline_name=settings["pipeline_name"],
            code_version=settings["code_version"],
            trigger=settings["trigger"],
            intended_use=settings["intended_use"],
            limitations=list(settings["limitations"]),
            run_id=self._context.pipeline_run_id if self._context else None,
            lineage={
                "model": {"id": model.id, "uri": model.uri},
                "window": [{"id": a.id, "uri": a.uri, "spans": ", ".join(card_data.spans_of(a))} for a in window],
                "evaluation": {"id": evaluated.id, "uri": evaluated.uri},
                "baseline": next((a.uri for a in input_dict.get("baseline_model", []) if has_model(a)), None),
            },
            spans=spans,
            statistics=feature_summaries(card_metrics.training_statistics(train_split.all, self._make_beam_pipeline)),
            estimates=estimates,
            evaluation=result,
            thresholds=blessing_checks.recorded_thresholds(settings["eval_config"]),
            gate=gate,
            baseline_version=_baseline_version(input_dict.get("baseline_model", []), settings["serving_root"]),
            infra=infra,
            fairness=fairness.table(result.metrics, result.baseline_by_slice, dict(gate.fairness), gate.fairness_min_examples, estimates),
            importance_auc=importance_auc,
            importance=[{"feature": i.feature, "auc_drop": i.auc_drop} for i in importance],
            attribution_baseline=attribution.training_baseline(card_data.rows(train_split.all)),
            data_limitations=data_limitations(result.metrics, train_raw, gate.min_slice_examples),
            unanswered=unanswered,
        )
        card = model_card.build(facts)
        io_utils.write_string_file(os.path.join(out, versions.CARD_DIR, versions.CARD_JSON), model_card.dumps(card))
        io_utils.write_string_file(os.path.join(out, versions.CARD_DIR, versions.CARD_HTML), model_card.render(card))


class ModelCardSpec(types.ComponentSpec):
    PARAMETERS = {SETTINGS_KEY: component_spec.ExecutionParameter(type=str)}  # noqa: RUF012 (TFX's spec shape)
    INPUTS = {  # noqa: RUF012
        "model": component_spec.ChannelParameter(type=standard_artifacts.Model),
        "examples": component_spec.ChannelParameter(type=standard_artifacts.Examples),
        "evaluation": component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "infra_blessing": component_spec.ChannelParameter(type=standard_artifacts.InfraBlessing),
        "baseline_model": component_spec.ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {"model_card": component_spec.ChannelParameter(type=ModelCardArtifact)}  # noqa: RUF012


class ModelCard(base_beam_component.BaseBeamComponent):
    """The candidate's model card (see the module docstring)."""

    SPEC_CLASS = ModelCardSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(ModelCardExecutor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, evaluation: types.BaseChannel,
                 infra_blessing: types.BaseChannel, baseline_model: types.BaseChannel | None, settings: dict[str, Any]):
        super().__init__(
            spec=ModelCardSpec(
                model=model, examples=examples, evaluation=evaluation, infra_blessing=infra_blessing,
                baseline_model=baseline_model, **{SETTINGS_KEY: json.dumps(settings, sort_keys=True)},
                model_card=types.Channel(type=ModelCardArtifact),
            )
        )
