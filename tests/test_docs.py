"""The README is a front page, and the defaults it and docs/ state are the configuration's."""
from __future__ import annotations

import re

from pipeline.configs import REPO_ROOT, PipelineConfig

README = (REPO_ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((REPO_ROOT / "docs").glob("*.md"))}
DEFAULTS = PipelineConfig()


def test_readme_is_a_front_page_that_links_every_doc():
    assert len(README.splitlines()) <= 150
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", README))
    assert linked == set(DOCS), f"docs not linked from the README: {sorted(set(DOCS) - linked)}"


def _flag_rows(text: str) -> list[tuple[list[str], list[str]]]:
    """(config fields named by the row's flags, the defaults the row states) for table rows with '(default ...)'."""
    rows = []
    for line in text.splitlines():
        match = re.match(r"\|(?P<flags>[^|]*--[^|]*)\|.*\(default (?P<defaults>[^)]*)\)", line)
        if match:
            fields = [f.replace("-", "_") for f in re.findall(r"`--([a-z-]+)", match.group("flags"))]
            rows.append((fields, [d.strip(" `") for d in match.group("defaults").split(" / ")]))
    return rows


def test_every_documented_flag_default_is_the_configured_default():
    checked = 0
    for name, text in {"README.md": README, **DOCS}.items():
        for fields, defaults in _flag_rows(text):
            known = [f for f in fields if hasattr(DEFAULTS, f)]
            for field, default in zip(known, defaults):
                actual = getattr(DEFAULTS, field)
                assert str(actual) == default or str(actual).endswith(default.rstrip("/")), (name, field, default, actual)
                checked += 1
    assert checked >= 3  # the run flags table states window, train and eval steps


def test_the_defaults_the_readme_states_are_true():
    window, steps = re.search(r"train on the newest (\d+) validated spans, (\d+) train steps", README).groups()
    assert (int(window), int(steps)) == (DEFAULTS.window_spans, DEFAULTS.train_steps)
    floor, acc_drop, auc_drop, acc_slice, auc_slice = re.search(
        r"are ≥ ([\d.]+) and at most ([\d.]+) / ([\d.]+) below the serving model's\s+overall and ([\d.]+) / ([\d.]+) on any slice",
        README,
    ).groups()
    by_metric = {t.metric: t for t in DEFAULTS.thresholds}
    accuracy, auc = by_metric["binary_accuracy"], by_metric["auc"]
    assert accuracy.lower_bound == auc.lower_bound == float(floor)
    assert (accuracy.max_drop, auc.max_drop) == (float(acc_drop), float(auc_drop))
    assert (accuracy.slice_max_drop, auc.slice_max_drop) == (float(acc_slice), float(auc_slice))
