"""`conveyor ct tick | watch | run | status | demo`: the continuous-training controller (ct/)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from conveyor.cli import common
from pipeline import configs, settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ct", help="continuous training controller")
    ct_commands = parser.add_subparsers(dest="ct_command", required=True, metavar="{tick,watch,run,status,demo}")
    for name, help_text in (
        ("tick", "evaluate every trigger once; launch at most one run"),
        ("watch", "tick in a loop"),
        ("run", "retrain on demand"),
        ("status", "show the last decisions"),
    ):
        sub = ct_commands.add_parser(name, help=help_text)
        sub.add_argument("--home", help="the home folder; with --target, the cluster home URI (gs://BUCKET/conveyor)")
        common.add_project(sub)
        sub.set_defaults(func=ct, reason=None, target=None)
        if name == "status":
            sub.add_argument("--last", type=common.positive_int, default=20, help="how many decisions (default 20)")
            continue
        sub.add_argument("--spans-root", type=Path)
        sub.add_argument("--drift-policy", choices=settings.DRIFT_POLICIES)
        if name == "run":
            sub.add_argument("--reason", required=True, help="why, recorded in the decision log")
        if name == "watch":
            sub.add_argument("--interval", type=common.non_negative_float, default=300.0, help="seconds between ticks (0: back to back)")
            sub.add_argument("--max-ticks", type=common.positive_int)
        cluster = sub.add_argument_group("on a cluster (docs/production.md)")
        cluster.add_argument("--target", choices=("kfp", "vertex"), help="submit the run to this orchestrator")
        cluster.add_argument("--image", default=os.environ.get("CONVEYOR_IMAGE"), help="the pipeline image (default $CONVEYOR_IMAGE)")
        cluster.add_argument("--endpoint", default=os.environ.get("KF_PIPELINES_ENDPOINT"), help="kfp: the KFP API URL")
        cluster.add_argument("--service-account", help="vertex: the service account the job runs as")
        cluster.add_argument("--poll-seconds", type=common.positive_float, default=60.0, help="how often to ask the orchestrator")
        cluster.add_argument("--timeout-seconds", type=common.positive_float, default=6 * 3600.0, help="give up waiting (the run is not cancelled)")
        cluster.add_argument("--work-dir", help="the local working home (default: a new temp folder)")
    demo = ct_commands.add_parser("demo", help="play the closed loop in a scratch home (server, traffic, late labels, ticks)")
    demo.add_argument("--home", type=Path, help="a new or empty folder for the scratch home (default: a new temp folder)")
    demo.set_defaults(func=run_demo)


def ct(args: argparse.Namespace) -> int:
    if args.target:
        return _on_cluster(args)
    home = common.local_home_arg(args)
    if args.ct_command == "status":
        config = common.existing_home(common.load_config(home=home), args)
        return _status(config, args.last)
    config = common.load_config(home=home, spans_root=args.spans_root, drift_policy=args.drift_policy)
    common.writable_home(config, args)
    with common.quiet(config, f"ct {args.ct_command}"):
        from conveyor.local import runner
        from ct import controller, decisions, journal

        try:
            if args.ct_command == "watch":
                controller.watch(lambda: controller.tick(config, runner.launch), args.interval, args.max_ticks)
                return 0
            decision = controller.tick(config, runner.launch, reason=args.reason)
        except journal.JournalError as exc:
            raise common.CommandError(str(exc)) from None
        print(decisions.format_decision(decision))
    if decision.outcome == decisions.BUSY:
        return common.EXIT_BUSY
    if args.ct_command == "run" and not (decision.fired and "on_demand" in decision.triggers):
        return common.EXIT_FAILED  # asked to retrain, and nothing ran for it
    return 0 if decision.outcome in (None, decisions.OK, decisions.ROLLED_BACK, decisions.PROMOTED, decisions.ABORTED) else common.EXIT_FAILED


def _status(config: configs.PipelineConfig, last: int) -> int:
    """Read only, and no TensorFlow: the decision log, the journal, the rollbacks in ML Metadata."""
    with common.quiet(config, "ct status"):
        from ct import decisions

        for decision in decisions.history(config)[-last:]:
            print(decisions.format_decision(decision))
        print(format_unfinished(config))
        print(format_rollbacks(config))
        print(format_rollouts(config))
    return 0


def format_unfinished(config: configs.PipelineConfig) -> str:
    """The decision a tick has not carried through yet (ct/journal.py): in progress, or interrupted."""
    import time

    from ct import journal
    from pipeline import home_lock

    try:
        intent = journal.unfinished(config)
    except journal.JournalError as exc:
        return f"unfinished decision: unreadable: {exc}"
    if intent is None:
        return "unfinished decision: none"
    decision = intent.decision
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(intent.updated))
    who = (f"tick pid {intent.pid} is carrying it now" if home_lock.alive(intent.pid)
           else f"tick pid {intent.pid} was interrupted: the next tick carries it through")
    return (f"unfinished decision: FIRED {'+'.join(decision['triggers'])}: {decision['reason']}\n"
            f"    reached {intent.step} at {when}; {who}")


def format_rollbacks(config: configs.PipelineConfig) -> str:
    """Every recorded rollback (operator or CT guard) with its reason."""
    import datetime

    from metadata import registry

    recorded = [registry.RecordedRollback.of(e) for e in registry.rollbacks(config)]
    if not recorded:
        return "rollbacks: none"
    lines = ["rollbacks:"]
    for r in recorded:
        when = datetime.datetime.fromtimestamp(r.time, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"  {when} UTC  {r.from_version or '-'} -> {r.to_version}: {r.reason}")
    return "\n".join(lines)


def format_rollouts(config: configs.PipelineConfig) -> str:
    """Every shadow or canary rollout: pushed under which policy, and its recorded promotion or abort."""
    import datetime

    from serving import rollout_control

    def when(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    decided = rollout_control.effective(config)
    lines = [f"  {when(r.time)} UTC  {r.candidate} ({r.policy}, stable {r.stable}): {r.outcome}: {r.reason}" for r in decided]
    try:
        running = rollout_control.current(config)
    except LookupError:
        running = None
    if running is not None and running.running:
        lines.append(f"  {when(running.started)} UTC  {rollout_control.describe(running)}")
    return "\n".join(["rollouts:", *lines]) if lines else "rollouts: none"


def _on_cluster(args: argparse.Namespace) -> int:
    """`ct tick|watch|run --target kfp|vertex --home URI`: decide here, submit to the cluster (conveyor/kubeflow/cluster_ct.py)."""
    import tempfile

    from data import spans_io

    if not args.home or not spans_io.is_uri(args.home):
        raise common.CommandError(f"--target {args.target} needs --home gs://BUCKET/PATH, the cluster home (got {args.home!r})")
    if not args.image:
        raise common.CommandError("--image (or CONVEYOR_IMAGE) is required: the pipeline image the submitted runs use")
    work_dir = Path(args.work_dir) if args.work_dir else None
    scratch = work_dir or Path(tempfile.mkdtemp(prefix="conveyor-ct-"))
    config = common.load_config(spans_root=None, drift_policy=args.drift_policy)
    with common.quiet(config.replace(home=scratch), f"ct {args.ct_command}"):
        from conveyor.kubeflow import cluster_ct, compiler
        from ct import controller, decisions, journal

        launch = cluster_ct.ClusterLaunch(
            target=args.target,
            image=args.image,
            spec_dir=scratch / "specs",
            endpoint=args.endpoint,
            service_account=args.service_account,
            poll_seconds=args.poll_seconds,
            timeout_seconds=args.timeout_seconds,
        )
        try:
            if args.ct_command == "watch":
                controller.watch(lambda: cluster_ct.tick(config, args.home, launch, work_dir=work_dir), args.interval, args.max_ticks)
                return 0
            decision = cluster_ct.tick(config, args.home, launch, reason=args.reason, work_dir=work_dir)
        except (ValueError, compiler.SubmitError, journal.JournalError) as exc:
            raise common.CommandError(str(exc)) from None
        print(decisions.format_decision(decision))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The demo writes only a scratch home it creates, or an empty folder; its ticks take the
    home's writer lock as any tick does."""
    import tempfile

    from pipeline import project

    found = project.current()
    if found is not None:
        raise common.CommandError(f"{found.root} is a project: the demo plays the taxi's loop only (run it outside the project, "
                                  f"without {project.VARIABLE})")
    if args.home is None:
        home = Path(tempfile.mkdtemp(prefix="conveyor-ct-demo-"))
    else:
        home = args.home
        if home.exists() and not home.is_dir():
            raise common.CommandError(f"--home {home}: not a folder")
        if home.is_dir() and any(home.iterdir()):
            raise common.CommandError(f"--home {home}: not empty (the demo writes a scratch home: name a new or empty folder)")
    config = common.writable_home(common.load_config(home=home, spans_root=home / "spans", train_steps=100, eval_steps=5,
                                                     ct_rollout="canary:30"), args)
    from conveyor import demo

    with common.quiet(config, "ct demo"):
        print(f"conveyor ct demo in {home} (decisions: {home / 'ct' / 'decisions.jsonl'})", flush=True)
        demo.play(config, say=lambda text: print(text, flush=True))
    return 0
