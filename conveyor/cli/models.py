"""`conveyor models [--clean]`: the pushed versions, which one serves, the rollbacks and rollouts.

Reads ML Metadata, the serving root and the servers' status files only: no TensorFlow, TFMA or
Beam is imported (tests/test_read_only_commands.py), so it answers in a fraction of a second."""
from __future__ import annotations

import argparse
import datetime
from collections.abc import Set as AbstractSet

from conveyor.cli import common
from conveyor.cli.ct import format_rollbacks, format_rollouts
from pipeline.evaluation import shown


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="list pushed versions, marking the one serving now")
    common.add_home(parser)
    parser.add_argument("--clean", action="store_true", help="remove incomplete and unrecorded version folders first")
    parser.set_defaults(func=models)


def models(args: argparse.Namespace) -> int:
    config = common.existing_home(common.load_config(home=common.local_home_arg(args)), args)
    with common.quiet(config, "models"):
        from metadata import registry
        from pipeline import home_lock
        from pipeline.versions import serving_state
        from serving import status

        if args.clean:
            with home_lock.hold(config.home, "conveyor models --clean"):
                removed = registry.clean(config)
            for entry in removed:
                print(f"removed {entry.version} ({entry.state}): {entry.problem()}")
            print(f"cleaned {len(removed)} version folder(s) under {config.serving_root}")
        entries = registry.list_versions(config)
        if not entries:
            print(f"no pushed versions under {config.serving_root}")
            return 0
        try:
            state = serving_state(config.serving_root)
        except OSError as exc:
            raise common.CommandError(f"cannot read {config.serving_root}: {exc}", common.EXIT_FAILED) from None
        servers = status.live(config.home)
        serving = {s["serving"] for s in servers if s.get("serving")} if servers else {state.version}
        failed = {v["version"]: (s, v) for s in servers for v in s.get("versions", []) if v.get("state") == "END"}
        print(format_models(entries, serving, _overall_metrics(config.serving_root_uri, entries), set(failed)))
        print(_serving_note(state, servers))
        for version, (server, found) in sorted(failed.items()):
            print(f"version {version} failed to load in server pid {server['pid']}: {found['error']}")
        print(format_rollbacks(config))
        print(format_rollouts(config))
    return 0


def _serving_note(state, servers: list[dict]) -> str:
    """Who serves what, and the rollback pointer's state, in a few lines."""
    if servers:
        where = ", ".join(f"pid {s['pid']} ({s.get('url', '?')}) serves {s.get('serving') or 'nothing'}" for s in servers)
        lines = [f"* = served by the running server: {where}"]
        if any(s.get("serving") != state.version for s in servers):
            lines.append(f"the serving rule selects {state.version}: a server switches within poll_seconds once it loads")
    else:
        lines = ["* = selected to serve (no server is running on this home)"]
    if state.pointer_error:
        lines.append(f"rollback pointer: {state.pointer_error}")
    elif state.rollback is not None:
        how = "in force" if state.rollback_in_force else "superseded by a newer push"
        lines.append(f"rollback to {state.rollback.version} ({how}; newest version at the time: {state.rollback.newest_at_rollback})")
    return "\n".join(lines)


def _overall_metrics(serving_root: str, entries) -> dict[str, dict[str, float]]:
    """version -> the Evaluator's overall metrics: from a published version's push record, else
    (staged, missing, or a record older than `offline_metrics`) from its evaluation."""
    from pipeline import evaluation, versions

    found = {}
    for entry in entries:
        record = versions.read_record(serving_root, entry.version) if entry.ready else None
        if record and versions.OFFLINE_METRICS in record:
            found[entry.version] = record[versions.OFFLINE_METRICS]
        elif entry.evaluation_uri:
            found[entry.version] = evaluation.load_evaluation(entry.evaluation_uri).metrics.get(evaluation.OVERALL, {})
    return found


def format_models(entries, serving: AbstractSet[str | None], metrics: dict[str, dict[str, float]], failed: AbstractSet[str] = frozenset()) -> str:
    """The version table: * marks the version(s) served, ! those a running server failed to load."""

    def flag(value: bool | None) -> str:
        return "-" if value is None else "yes" if value else "NO"

    from models import label_metrics

    names = label_metrics.active().table  # accuracy, and AUC for a binary label
    shown_metrics = {e.version: [shown(name, metrics.get(e.version, {}).get(name), metrics.get(e.version, {})) for name in names] for e in entries}
    width = max([8] + [len(cells[-1]) + 1 for cells in shown_metrics.values()])  # n/a (one class) is wider than a figure
    header = f"  {'version':<12}{'pushed at (UTC)':<21}{'spans':<10}{'blessed':<9}{'infra':<7}{'accuracy':>9}" + (
        f"{'auc':>{width}}" if len(names) > 1 else "") + "  run"
    lines = [header]
    for e in entries:
        when = datetime.datetime.fromtimestamp(e.pushed_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        acc, *auc = shown_metrics[e.version]
        spans = ",".join([*map(str, e.window_spans), *(f"f{f}" for f in e.window_feedback_spans)]) or "-"
        mark = "*" if e.version in serving else "!" if e.version in failed else " "
        problem = f"  ({e.problem()})" if e.problem() else ""
        extra = "".join(f"{cell:>{width}}" for cell in auc)
        lines.append(f"{mark} {e.version:<12}{when:<21}{spans:<10}{flag(e.blessed):<9}{flag(e.infra_blessed):<7}{acc:>9}{extra}  {e.run_id or '-'}{problem}")
    if failed:
        lines.append("! = failed to load in a running server (the last good version keeps serving)")
    lines.append("only published versions are served; spans fN = feedback span N (served traffic)")
    return "\n".join(lines)
