"""The model card of a real run (the shared `small_run`): written into the pushed version as JSON
with the Model Card Toolkit's field names and as HTML, opened in headless Chromium, summarised by
the installed `conveyor card`, linked from the run report. Its reproducibility is checked in
tests/test_reproducibility.py, its fairness table's gate in tests/test_fairness.py."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conveyor.local import run_summary
from pipeline import evaluation, model_card, versions
from tests.browser import rendered
from tests.serving_helpers import CONVEYOR

# The Model Card Toolkit schema v0.0.2 (model_card.schema.json): its top level is closed.
MCT_TOP_LEVEL = {"schema_version", "model_details", "model_parameters", "quantitative_analysis", "considerations"}
MCT_SECTIONS = {
    "model_details": {"name", "overview", "documentation", "owners", "version"},
    "model_parameters": {"model_architecture", "data", "input_format", "output_format"},
    "quantitative_analysis": {"performance_metrics"},
    "considerations": {"users", "use_cases", "limitations", "ethical_considerations"},
}
SECTIONS = ("details", "intended-use", "limitations", "training-data", "metrics", "fairness", "importance", "blessing", "lineage")


def _card(small_run) -> tuple[str, dict]:
    config, summary = small_run
    version = Path(summary.pushed_path).name
    return version, json.loads(Path(versions.card_file(config.serving_root, version, versions.CARD_JSON)).read_text())


def test_a_pushed_version_carries_its_card_with_the_model_card_toolkit_s_fields(small_run):
    version, card = _card(small_run)
    _, summary = small_run
    assert set(card) == MCT_TOP_LEVEL and card["schema_version"] == "0.0.2"
    for section, names in MCT_SECTIONS.items():
        assert names <= set(card[section]), section
    assert card["model_details"]["version"]["name"] == version and card["model_details"]["version"]["date"]
    assert card["model_details"]["name"] == small_run[0].model_name
    metrics = card["quantitative_analysis"]["performance_metrics"]
    assert all(set(m) <= {"type", "value", "slice", "confidence_interval", "undefined"} for m in metrics)
    evaluated = summary.evaluation.metrics
    for entry in metrics:
        if "undefined" in entry:  # no figure for what has no meaning: n/a and why
            assert "value" not in entry
            continue
        # The figures are the Evaluator's (the card's TFMA pass asks the same model about the same examples).
        assert entry["value"] == pytest.approx(evaluated[entry["slice"]][entry["type"]], abs=1e-6), entry
        bounds = entry.get("confidence_interval")
        if bounds:
            assert 0 <= bounds["lower_bound"] <= entry["value"] <= bounds["upper_bound"] <= 1, entry
    overall = {m["type"]: m for m in metrics if m["slice"] == evaluation.OVERALL}
    assert overall["binary_accuracy"]["confidence_interval"]["upper_bound"] > overall["binary_accuracy"]["confidence_interval"]["lower_bound"]
    cash = {m["type"]: m for m in metrics if m["slice"] == "payment_type=Cash"}
    assert cash["auc"]["undefined"] == cash["fnr"]["undefined"] == "one class"


def test_the_card_says_what_the_data_shows_about_cash_trips_and_ranks_payment_type_first(small_run):
    _, card = _card(small_run)
    limitations = [item["description"] for item in card["considerations"]["limitations"]]
    cash = next(text for text in limitations if text.startswith("payment_type=Cash"))
    assert "is labelled 0" in cash and "record a tip of 0" in cash and "says nothing about the model" in cash
    importance = card["quantitative_analysis"]["feature_importance"]["features"]
    assert importance[0]["feature"] == "payment_type" and importance[0]["auc_drop"] > 10 * importance[1]["auc_drop"]
    baseline = card["model_parameters"]["attribution_baseline"]  # each feature's training values and their weights
    assert baseline["payment_type"][0][0] == "Cash"  # the most frequent payment type of the training trips
    assert all(sum(w for _, w in values) == pytest.approx(1) for values in baseline.values())


def test_the_card_opens_in_chromium_with_every_section(small_run, tmp_path):
    config, summary = small_run
    version = Path(summary.pushed_path).name
    page = rendered(tmp_path, Path(versions.card_file(config.serving_root, version, versions.CARD_HTML)))
    assert all(page.by_id.get(section) for section in SECTIONS), [s for s in SECTIONS if not page.by_id.get(s)]
    assert page.by_id["version"] == version and page.by_id["trigger"] == config.trigger
    assert page.by_id["verdict"] == "blessed: every gated threshold met"
    rows = {row[0]: row for row in page.body_rows("metrics")}
    assert rows["payment_type=Cash"][3] == "n/a (one class)"  # AUC
    assert "[" in rows["overall"][2]  # accuracy with its interval
    assert {row[1] for row in page.body_rows("fairness")} == {"false positive rate", "false negative rate", "selection rate"}
    assert page.body_rows("importance")[0][0] == "payment_type"
    page.assert_inert()


def test_the_run_report_and_summary_point_at_the_card(small_run, tmp_path):
    config, summary = small_run
    card = versions.card_file(config.serving_root, Path(summary.pushed_path).name, versions.CARD_HTML)
    assert summary.card_file == card and f"\nmodel card: {card}\n" in run_summary.format_summary(summary)
    page = rendered(tmp_path, summary.report_file)
    link = next(attrs for tag, attrs in page.elements if tag == "a" and attrs.get("id") == "model-card")
    assert link["href"] == Path(card).as_uri()


def test_conveyor_card_prints_where_the_card_is_and_its_gist(small_run):
    config, summary = small_run
    version = Path(summary.pushed_path).name
    done = subprocess.run([str(CONVEYOR), "card", "--home", str(config.home)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"model card of {config.model_name} version {version} (")
    assert lines[1] == f"  page  {versions.card_file(config.serving_root, version, versions.CARD_HTML)}"
    assert lines[2] == f"  json  {versions.card_file(config.serving_root, version, versions.CARD_JSON)}"
    accuracy = summary.evaluation.metrics[evaluation.OVERALL]["binary_accuracy"]
    assert f"binary_accuracy {accuracy:.4f} [" in done.stdout
    assert "most important features (AUC drop when shuffled): payment_type " in done.stdout
    assert any(line.startswith("  - payment_type=Cash: every one of its") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "123"], "--version 123: not a published version under {root}"),
        (["--version", "../x"], "--version ../x: not a published version under {root}"),
    ],
)
def test_conveyor_card_names_a_bad_version_in_one_line(small_run, args, message):
    config, _ = small_run
    done = subprocess.run([str(CONVEYOR), "card", "--home", str(config.home), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"conveyor card: {message.format(root=config.serving_root)}\n" and done.stdout == ""


def test_a_card_renders_from_its_json_alone(small_run):
    config, _ = small_run
    version, card = _card(small_run)
    html = Path(versions.card_file(config.serving_root, version, versions.CARD_HTML)).read_text()
    assert model_card.render(card) == html
