"""`conveyor card [--version V]`: where a pushed version's model card is, and what it says.

Reads the card the pipeline wrote into the version's folder (pipeline/model_card.py): JSON and
files only, no TensorFlow, TFMA or Beam (tests/test_read_only_commands.py)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from conveyor.cli import common

TOP_FEATURES = 5


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("card", help="where a pushed version's model card is, and a summary of it")
    parser.add_argument("--version", help="pushed version (default: the one serving now)")
    common.add_home(parser, "output root the pipeline ran in")
    parser.set_defaults(func=card)


def card(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    with common.quiet(config, "card"):
        from data import files
        from pipeline import versions

        version = args.version or versions.serving_version(config.serving_root_uri)
        if version is None:
            raise common.CommandError(f"no pushed model under {config.serving_root_uri}", common.EXIT_FAILED)
        if not version.isdigit() or not versions.is_ready(config.serving_root_uri, version):
            raise common.CommandError(f"--version {version}: not a published version under {config.serving_root_uri}")
        path = versions.card_file(config.serving_root_uri, version, versions.CARD_JSON)
        if not files.exists(path):
            raise common.CommandError(f"version {version} has no model card ({path}): it was pushed before cards were written", common.EXIT_FAILED)
        print(format_card(json.loads(files.read_bytes(path)), versions.card_file(config.serving_root_uri, version, versions.CARD_HTML), path))
    return 0


def _metric(entry: dict[str, Any]) -> str:
    if "undefined" in entry:
        return f"{entry['type']} n/a ({entry['undefined']})"
    bounds = entry.get("confidence_interval")
    interval = f" [{bounds['lower_bound']:.4f}, {bounds['upper_bound']:.4f}]" if bounds else ""
    value = f"{entry['value']:.0f}" if entry["type"] == "example_count" else f"{entry['value']:.4f}"
    return f"{entry['type']} {value}{interval}"


def format_card(card: dict[str, Any], html: str, json_path: str) -> str:
    """Where the card is, then its gist: version, verdict, overall metrics, fairness, importance, limitations."""
    details, qa = card["model_details"], card["quantitative_analysis"]
    blessing = qa["blessing"]
    overall = [_metric(e) for e in qa["performance_metrics"] if e["slice"] == "overall"]
    flagged = [row for row in qa["fairness"] if row["flagged"]]
    features = qa["feature_importance"]["features"][:TOP_FEATURES]
    lines = [
        f"model card of {details['name']} version {details['version']['name']} ({details['version']['date']})",
        f"  page  {html}",
        f"  json  {json_path}",
        f"code {details['code_version']}; trigger: {details['trigger']}; {details['version']['diff']}",
        f"{blessing['verdict']}; infra check {'passed' if blessing['infra_check']['passed'] else 'FAILED'}",
        "overall: " + ", ".join(overall),
        "fairness: " + (
            "; ".join(f"{row['slice']} {row['label']} gap widened by {row['widening']:+.4f} (refused)" for row in flagged)
            or f"no slice's gap widened beyond its bound ({len(qa['fairness'])} rates on slices)"
        ),
        "most important features (AUC drop when shuffled): "
        + (", ".join(f"{f['feature']} {f['auc_drop']:.4f}" for f in features) or "not computed (one class)"),
        "limitations:",
        *(f"  - {item['description']}" for item in card["considerations"]["limitations"]),
    ]
    return "\n".join(lines)
