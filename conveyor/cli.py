"""`conveyor`: the command-line front door.

    conveyor run [options]              run the pipeline locally (see local_runner.py)
    conveyor ct tick                    one continuous-training decision (for cron / KFP recurring runs);
                                        --target kfp|vertex --home gs://...: launch on a cluster
    conveyor ct watch [--interval S]    tick in a loop (on a cluster too, with tick's --target options)
    conveyor ct run --reason TEXT       retrain on demand
    conveyor ct status [--last N]       the last decisions and why
    conveyor ct demo [--home DIR]       the closed loop played for real: server, traffic, late labels, ticks
    conveyor serve [options]            serve the pushed models over TF Serving's REST API (serving/)
    conveyor models [--clean]           list pushed versions, marking the one serving now (--clean:
                                        remove incomplete and unrecorded version folders)
    conveyor rollback [--to V]          serve an earlier blessed version, without retraining
    conveyor monitor [options]          statistics, skew, drift and live metrics of the request log
    conveyor tensorboard                TensorBoard on 127.0.0.1 for the newest trained model's logs
    conveyor notebooks                  JupyterLab on 127.0.0.1 for notebooks/, reading the same home
    conveyor lineage [--version V]      what made a pushed model (default: the one serving now)
    conveyor kubeflow [options]         compile for Kubeflow Pipelines v2 / Vertex AI (see kubeflow_runner.py);
                                        --check-locally executes the compiled spec here first
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from conveyor import collector
from data import spans_io
from pipeline import configs


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spans-root", type=Path, help="folder of span-N/ data folders")
    parser.add_argument("--home", type=Path, help="output root: pipeline_root, metadata, serving_model, logs")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--span", type=int, help="ingest exactly this span")
    which.add_argument(
        "--latest-only",
        action="store_true",
        help="ingest only the newest span, even if older spans were never ingested",
    )
    parser.add_argument("--window-spans", type=int, help="train on the newest K validated spans")
    parser.add_argument("--drift-policy", choices=configs.DRIFT_POLICIES, help="drift over threshold: block the run or warn")
    _add_beam_args(parser)
    parser.add_argument("--no-cache", action="store_true", help="re-run every component")
    parser.add_argument("--verbose", action="store_true", help="full TFX logs on the console")


def _add_beam_args(parser: argparse.ArgumentParser) -> None:
    beam = parser.add_argument_group("Beam (every Beam-powered component)")
    beam.add_argument("--beam-mode", choices=configs.BEAM_MODES)
    beam.add_argument("--beam-workers", type=int, help="processes for multi_processing (0 = one per core)")
    beam.add_argument("--gcp-project", help="dataflow (and Vertex AI): the Google Cloud project")
    beam.add_argument("--gcp-region", help="dataflow (and Vertex AI): the region")
    beam.add_argument("--beam-temp-location", help="dataflow: temp_location, gs://...")
    beam.add_argument("--beam-job-endpoint", help="flink / spark: the Beam job server, host:port")
    beam.add_argument("--beam-environment-type", help="flink / spark: DOCKER, PROCESS, EXTERNAL or LOOPBACK")
    beam.add_argument("--beam-environment-config", help="flink / spark: e.g. the SDK harness image")
    beam.add_argument("--beam-setup-file", help="setup.py remote workers install (default: this project's)")
    beam.add_argument("--beam-extra-arg", action="append", help="any other Beam pipeline option (repeatable)")


def _beam_overrides(args: argparse.Namespace) -> dict:
    return dict(
        beam_mode=args.beam_mode,
        beam_workers=args.beam_workers,
        gcp_project=args.gcp_project,
        gcp_region=args.gcp_region,
        beam_temp_location=args.beam_temp_location,
        beam_job_endpoint=args.beam_job_endpoint,
        beam_environment_type=args.beam_environment_type,
        beam_environment_config=args.beam_environment_config,
        beam_setup_file=args.beam_setup_file,
        beam_extra_args=tuple(args.beam_extra_arg) if args.beam_extra_arg else None,
    )


def _load(**overrides) -> configs.PipelineConfig:
    """configs.load, with a bad setting reported as the command's error."""
    try:
        return configs.load(**overrides)
    except ValueError as exc:
        raise SystemExit(f"conveyor: {exc}") from exc


def cmd_run(args: argparse.Namespace) -> int:
    from conveyor import local_run, run_summary
    from metadata import connection, spans
    from pipeline import home_lock

    config = _load(
        spans_root=args.spans_root,
        home=args.home,
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        span=args.span,
        window_spans=args.window_spans,
        enable_cache=False if args.no_cache else None,
        drift_policy=args.drift_policy,
        **_beam_overrides(args),
    )
    where = connection.describe(connection.connection_config(config))
    with home_lock.hold(config.home, "conveyor run"):
        for span in spans.spans_to_run(config, args.latest_only):
            print(f"conveyor: running {config.pipeline_name} on span {span} (home: {config.home}, metadata: {where})", flush=True)
            summary = local_run.run(config.replace(span=span), verbose=args.verbose)
            print(run_summary.format_summary(summary), flush=True)
            if not summary.ok or summary.missing_metrics:
                return 1
    return 0


def cmd_ct(args: argparse.Namespace) -> int:
    from conveyor import local_run
    from ct import controller, decisions

    if getattr(args, "target", None):
        return _ct_on_cluster(args)
    if args.home and spans_io.is_uri(args.home):
        print(f"conveyor ct: --home {args.home} is a URI: only `ct tick|run --target kfp|vertex` reads a cluster home", file=sys.stderr)
        return 2
    home = Path(args.home) if args.home else None
    if args.ct_command == "demo":
        from conveyor import ct_demo

        return ct_demo.main(home)
    config = configs.load(home=home, spans_root=args.spans_root, drift_policy=args.drift_policy)
    if args.ct_command == "status":
        for decision in decisions.history(config)[-args.last:]:
            print(controller.format_decision(decision))
        print(format_rollbacks(config))
        return 0
    if args.ct_command == "watch":
        controller.watch(lambda: controller.tick(config, local_run.launch), args.interval, args.max_ticks)
        return 0
    decision = controller.tick(config, local_run.launch, reason=args.reason if args.ct_command == "run" else None)
    print(controller.format_decision(decision))
    if decision.outcome == decisions.BUSY:
        from pipeline.home_lock import BUSY_EXIT_CODE

        return BUSY_EXIT_CODE
    return 0 if decision.outcome in (None, decisions.OK, decisions.ROLLED_BACK) else 1


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



def _ct_on_cluster(args: argparse.Namespace) -> int:
    """`ct tick|watch|run --target kfp|vertex --home URI`: decide here, submit to the cluster (conveyor/cluster_ct.py)."""
    import tempfile

    from conveyor import cluster_ct, kubeflow
    from ct import controller

    if not args.home or not spans_io.is_uri(args.home):
        print(f"conveyor ct: --target {args.target} needs --home gs://BUCKET/PATH, the cluster home (got {args.home!r})", file=sys.stderr)
        return 2
    if not args.image:
        print("conveyor ct: --image (or CONVEYOR_IMAGE) is required: the pipeline image the submitted runs use", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir) if args.work_dir else None
    config = _load(spans_root=None, drift_policy=args.drift_policy)
    launch = cluster_ct.ClusterLaunch(
        target=args.target,
        image=args.image,
        spec_dir=(work_dir or Path(tempfile.mkdtemp(prefix="conveyor-specs-"))) / "specs",
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
    except (ValueError, kubeflow.SubmitError) as exc:
        print(f"conveyor ct: {exc}", file=sys.stderr)
        return 2
    print(controller.format_decision(decision))
    return 0

def cmd_serve(args: argparse.Namespace) -> int:
    from serving import supervisor

    config = _load(home=args.home, serving_workers=args.workers)
    try:
        return supervisor.serve(config, host=args.host, port=args.port, log_requests=not args.no_request_log)
    except OSError as exc:  # the address is taken or cannot be bound
        print(f"conveyor serve: {exc}", file=sys.stderr)
        return 2


def cmd_models(args: argparse.Namespace) -> int:
    from metadata import registry
    from pipeline import home_lock
    from pipeline.versions import serving_state
    from serving import status

    config = configs.load(home=args.home)
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
        print(f"conveyor models: cannot read {config.serving_root}: {exc}", file=sys.stderr)
        return 1
    servers = status.live(config.home)
    serving = {s["serving"] for s in servers if s.get("serving")} if servers else {state.version}
    failed = {v["version"]: (s, v) for s in servers for v in s.get("versions", []) if v.get("state") == "END"}
    print(format_models(entries, serving, _overall_metrics(entries), set(failed)))
    print(_serving_note(state, servers))
    for version, (server, found) in sorted(failed.items()):
        print(f"version {version} failed to load in server pid {server['pid']}: {found['error']}")
    print(format_rollbacks(config))
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


def _overall_metrics(entries) -> dict[str, dict[str, float]]:
    """version -> the Evaluator's overall metrics (TFMA is imported only if some version has them)."""
    with_eval = [e for e in entries if e.evaluation_uri]
    if not with_eval:
        return {}
    from pipeline import evaluation

    return {e.version: evaluation.load_evaluation(e.evaluation_uri).metrics.get(evaluation.OVERALL, {}) for e in with_eval}


def format_models(entries, serving: set, metrics: dict[str, dict[str, float]], failed: set = frozenset()) -> str:
    """The version table: * marks the version(s) served, ! those a running server failed to load."""
    import datetime

    def flag(value: bool | None) -> str:
        return "-" if value is None else "yes" if value else "NO"

    header = f"  {'version':<12}{'pushed at (UTC)':<21}{'spans':<10}{'blessed':<9}{'infra':<7}{'accuracy':>9}{'auc':>8}  run"
    lines = [header]
    for e in entries:
        when = datetime.datetime.fromtimestamp(e.pushed_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        m = metrics.get(e.version, {})
        acc = f"{m['binary_accuracy']:.4f}" if "binary_accuracy" in m else "-"
        auc = f"{m['auc']:.4f}" if "auc" in m else "-"
        spans = ",".join([*map(str, e.window_spans), *(f"f{f}" for f in e.window_feedback_spans)]) or "-"
        mark = "*" if e.version in serving else "!" if e.version in failed else " "
        problem = f"  ({e.problem()})" if e.problem() else ""
        lines.append(
            f"{mark} {e.version:<12}{when:<21}{spans:<10}{flag(e.blessed):<9}{flag(e.infra_blessed):<7}{acc:>9}{auc:>8}  {e.run_id or '-'}{problem}"
        )
    if failed:
        lines.append("! = failed to load in a running server (the last good version keeps serving)")
    lines.append("only published versions are served; spans fN = feedback span N (served traffic)")
    return "\n".join(lines)


def cmd_rollback(args: argparse.Namespace) -> int:
    from pipeline import home_lock
    from serving import rollback, status

    config = configs.load(home=args.home)
    try:
        with home_lock.hold(config.home, "conveyor rollback"):
            result = rollback.clear(config) if args.clear else rollback.rollback(config, args.to)
    except (LookupError, ValueError, FileNotFoundError) as exc:
        print(f"conveyor rollback: {exc}", file=sys.stderr)
        return 2
    if result is None:
        print("conveyor rollback: no rollback pointer to clear")
        return 0
    if result.execution_id is None:
        print(f"removed the rollback pointer; version {result.to_version or 'none'} serves (unchanged)")
        return 0
    what = "cleared the rollback" if args.clear else "rolled back"
    print(f"{what}: {result.from_version or 'nothing'} -> {result.to_version} (MLMD execution {result.execution_id}); "
          "the next pushed version supersedes it")
    if args.no_wait:
        return 0
    switched, behind, waited = status.wait_until_serving(config.home, result.to_version, args.wait)
    if not switched and not behind:
        print(f"no server is running on {config.home}: the next `conveyor serve` serves {result.to_version}")
    for server in switched:
        print(f"server pid {server['pid']} ({server.get('url', '?')}) serves {result.to_version} after {waited:.1f} s")
    for server in behind:
        reason = server.get("error") or "still loading"
        print(f"server pid {server['pid']} still serves {server.get('serving')} after {waited:.0f} s: {reason}", file=sys.stderr)
    return 1 if behind else 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from monitoring import job

    config = configs.load(home=args.home)
    result = job.run(
        config,
        end=args.end,
        hours=args.hours,
        log_root=args.request_log,
        labels_root=args.labels,
        out_dir=args.out,
    )
    print(job.format_result(result))
    return result.exit_code


def _iso_time(text: str):
    import datetime

    when = datetime.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
def cmd_tensorboard(args: argparse.Namespace) -> int:
    from conveyor import viewers

    config = configs.load(home=args.home)
    logdir, trainer = viewers.trainer_logdir(config)
    print(f"conveyor: Trainer execution {trainer.execution.id} ({trainer.state}), logs: {logdir}", flush=True)
    viewers.serve_tensorboard(logdir, args.port)
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from conveyor import viewers

    config = configs.load(home=args.home)
    argv, env = viewers.jupyter_command(config, args.port)
    print(f"conveyor: JupyterLab on {viewers.NOTEBOOKS_DIR}, reading runs in {env['CONVEYOR_HOME']}", flush=True)
    os.execve(argv[0], argv, env)
    return 1  # not reached: execve replaces this process


def cmd_lineage(args: argparse.Namespace) -> int:
    from metadata import lineage

    config = _load(home=args.home)
    try:
        found = lineage.for_config(config, args.version)
    except lineage.LineageError as exc:
        print(f"conveyor lineage: {exc}", file=sys.stderr)
        return 1
    print(lineage.format_lineage(found))
    return 0


def _add_kubeflow_args(parser: argparse.ArgumentParser) -> None:
    from conveyor import kubeflow

    parser.add_argument("--target", choices=kubeflow.TARGETS, required=True, help="Kubeflow Pipelines or Vertex AI")
    parser.add_argument("--image", default=os.environ.get("CONVEYOR_IMAGE"), help="container image (see Dockerfile)")
    parser.add_argument("--pipeline-root", help="URI of the pipeline root, e.g. gs://bucket/conveyor")
    parser.add_argument("--serving-root", help="URI pushed models go to (default <pipeline-root>/serving_model)")
    parser.add_argument("--data-root", help="URI of the span-N/ folders (default <pipeline-root>/spans)")
    parser.add_argument("--schema", help="schema file the container reads (default: the image's copy)")
    parser.add_argument("--output", type=Path, help=f"spec file to write (default outputs/{kubeflow.SPEC_FILE})")
    parser.add_argument("--span", type=int, help="ingest exactly this span (default: the newest at run time)")
    parser.add_argument("--window-spans", type=int)
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--eval-steps", type=int)
    parser.add_argument("--no-cache", action="store_true", help="compile with caching off")
    _add_beam_args(parser)
    check = parser.add_argument_group("checking before deploying")
    check.add_argument(
        "--check-locally",
        action="store_true",
        help="execute the compiled spec here, task by task through TFX's container entrypoint, on every span "
        "of --spans-root, then once more unchanged (see docs/production.md)",
    )
    check.add_argument("--spans-root", type=Path, help="--check-locally: folder of span-N/ folders (default data/spans)")
    check.add_argument("--check-dir", type=Path, help="--check-locally: an empty or new folder (default: a new temp folder)")
    submit = parser.add_argument_group("submitting")
    submit.add_argument("--submit", action="store_true", help="send the compiled spec to the target")
    submit.add_argument("--endpoint", default=os.environ.get("KF_PIPELINES_ENDPOINT"), help="kfp: the KFP API URL")
    submit.add_argument("--experiment", default="conveyor", help="kfp: experiment name")
    submit.add_argument("--service-account", help="vertex: the service account runs use")


def cmd_kubeflow(args: argparse.Namespace) -> int:
    from conveyor import kubeflow

    if args.check_locally:
        return _check_locally(args)
    try:
        config = kubeflow.cluster_config(
            _load(
                remote_pipeline_root=args.pipeline_root,
                remote_serving_root=args.serving_root,
                remote_spans_root=args.data_root,
                remote_schema=args.schema,
                span=args.span,
                window_spans=args.window_spans,
                train_steps=args.train_steps,
                eval_steps=args.eval_steps,
                enable_cache=False if args.no_cache else None,
                **_beam_overrides(args),
            ),
            args.target,
        )
        output = args.output or configs.REPO_ROOT / "outputs" / kubeflow.SPEC_FILE
        spec = kubeflow.compile_spec(config, args.image, output)
    except ValueError as exc:
        print(f"conveyor kubeflow: {exc}", file=sys.stderr)
        return 2
    print(f"conveyor kubeflow: wrote {output} ({args.target}, image {args.image})\n{kubeflow.summary(spec)}")
    if not args.submit:
        return 0
    try:
        if args.target == "kfp":
            run = kubeflow.submit_kfp(output, config, args.endpoint, args.experiment)
        else:
            run = kubeflow.submit_vertex(output, config, args.service_account)
    except kubeflow.SubmitError as exc:
        print(f"conveyor kubeflow: {exc}", file=sys.stderr)
        return 1
    print(f"conveyor kubeflow: submitted {run}")
    return 0


def _check_locally(args: argparse.Namespace) -> int:
    import tempfile

    from conveyor import local_check

    config = _load(
        spans_root=args.spans_root,
        window_spans=args.window_spans,
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        enable_cache=False if args.no_cache else None,
    )
    check_dir = args.check_dir or Path(tempfile.mkdtemp(prefix="conveyor-kubeflow-check-"))
    try:
        result = local_check.run(config, args.target, args.image or "conveyor:local-check", check_dir)
    except ValueError as exc:
        print(f"conveyor kubeflow: {exc}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The `conveyor` command line (what deploy/*.yaml and the docs call)."""
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline locally")
    _add_run_args(run_parser)
    run_parser.set_defaults(func=cmd_run)

    ct_parser = commands.add_parser("ct", help="continuous training controller")
    ct_commands = ct_parser.add_subparsers(dest="ct_command", required=True)
    for name, help_text in (
        ("tick", "evaluate every trigger once; launch at most one run"),
        ("watch", "tick in a loop"),
        ("run", "retrain on demand"),
        ("status", "show the last decisions"),
        ("demo", "play the closed loop in a scratch home (server, traffic, late labels, ticks)"),
    ):
        sub = ct_commands.add_parser(name, help=help_text)
        sub.add_argument("--home", help="the home folder; with --target, the cluster home URI (gs://BUCKET/conveyor)")
        sub.add_argument("--spans-root", type=Path)
        sub.add_argument("--drift-policy", choices=configs.DRIFT_POLICIES)
        sub.set_defaults(func=cmd_ct, reason=None)
        if name == "run":
            sub.add_argument("--reason", required=True, help="why, recorded in the decision log")
        if name == "watch":
            sub.add_argument("--interval", type=float, default=300.0, help="seconds between ticks")
            sub.add_argument("--max-ticks", type=int)
        if name == "status":
            sub.add_argument("--last", type=int, default=20)
        if name in ("tick", "watch", "run"):
            cluster = sub.add_argument_group("on a cluster (docs/production.md)")
            cluster.add_argument("--target", choices=("kfp", "vertex"), help="submit the run to this orchestrator")
            cluster.add_argument("--image", default=os.environ.get("CONVEYOR_IMAGE"), help="the pipeline image (default $CONVEYOR_IMAGE)")
            cluster.add_argument("--endpoint", default=os.environ.get("KF_PIPELINES_ENDPOINT"), help="kfp: the KFP API URL")
            cluster.add_argument("--service-account", help="vertex: the service account the job runs as")
            cluster.add_argument("--poll-seconds", type=float, default=60.0, help="how often to ask the orchestrator")
            cluster.add_argument("--timeout-seconds", type=float, default=6 * 3600.0, help="give up waiting (the run is not cancelled)")
            cluster.add_argument("--work-dir", help="the local working home (default: a new temp folder)")

    serve = commands.add_parser("serve", help="serve the pushed models (TF Serving REST API)")
    serve.add_argument("--home", type=Path, help="output root holding serving_model/ (default outputs/)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8501; 0 = any free port)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (default serving_workers; 0 = one per core)")
    serve.add_argument("--no-request-log", action="store_true", help="do not log predictions")
    serve.set_defaults(func=cmd_serve)

    models = commands.add_parser("models", help="list pushed versions, marking the one serving now")
    models.add_argument("--home", type=Path)
    models.add_argument("--clean", action="store_true", help="remove incomplete and unrecorded version folders first")
    models.set_defaults(func=cmd_models)

    rollback = commands.add_parser("rollback", help="serve an earlier blessed version")
    rollback.add_argument("--home", type=Path)
    what = rollback.add_mutually_exclusive_group()
    what.add_argument("--to", help="version to serve (default: the newest eligible one before the serving version)")
    what.add_argument("--clear", action="store_true", help="remove the rollback pointer (also a corrupt one): the newest version serves")
    rollback.add_argument("--wait", type=float, default=60.0, help="seconds to wait for running servers to switch (default 60)")
    rollback.add_argument("--no-wait", action="store_true", help="do not wait for running servers to switch")
    rollback.set_defaults(func=cmd_rollback)

    monitor = commands.add_parser("monitor", help="monitor the request log: statistics, skew, drift, live metrics")
    monitor.add_argument("--home", type=Path)
    monitor.add_argument("--end", type=_iso_time, help="end of the window, ISO time (default now; UTC if no zone)")
    monitor.add_argument("--hours", type=float, help="window length (default monitor_window_hours)")
    monitor.add_argument("--request-log", type=Path, help="request log root (default HOME/request_log)")
    monitor.add_argument("--labels", type=Path, help="labels folder (default HOME/labels)")
    monitor.add_argument("--out", type=Path, help="where result.json and report.html go (default HOME/monitoring/<window>)")
    monitor.set_defaults(func=cmd_monitor)
    for name, func, port, what in (
        ("tensorboard", cmd_tensorboard, 6006, "TensorBoard on 127.0.0.1 for the newest Trainer's logs"),
        ("notebooks", cmd_notebooks, 8888, "JupyterLab on 127.0.0.1 for notebooks/"),
    ):
        viewer = commands.add_parser(name, help=what)
        viewer.add_argument("--home", type=Path, help="Conveyor home whose runs to read (default: outputs/)")
        viewer.add_argument("--port", type=int, default=port, help=f"port on 127.0.0.1 (default {port}; 0 = any free port)")
        viewer.set_defaults(func=func)
    lineage_parser = commands.add_parser("lineage", help="what made a pushed model")
    lineage_parser.add_argument("--version", help="pushed version (default: the one serving now)")
    lineage_parser.add_argument("--home", type=Path, help="output root the pipeline ran in")
    lineage_parser.add_argument("--verbose", action="store_true", help="TensorFlow and MLMD logs on the console")
    lineage_parser.set_defaults(func=cmd_lineage)
    kubeflow_parser = commands.add_parser("kubeflow", help="compile (and submit) for Kubeflow Pipelines v2 / Vertex AI")
    _add_kubeflow_args(kubeflow_parser)
    kubeflow_parser.set_defaults(func=cmd_kubeflow)
    return parser


def main(argv: list[str] | None = None) -> int:
    collector.set_for_commands()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    args = build_parser().parse_args(argv)
    if args.command == "notebooks" or getattr(args, "verbose", False):  # JupyterLab prints its own URL
        return _dispatch(args)
    from conveyor.progress import quiet_command

    with quiet_command(_logs_dir(args) / f"{args.command}.log"):
        return _dispatch(args)


def _logs_dir(args: argparse.Namespace) -> Path:
    home = getattr(args, "home", None)
    if home is not None:  # a cluster home (ct --target) is a URI: log locally then
        home = None if spans_io.is_uri(home) else Path(home)
    try:
        return configs.load(home=home).logs_dir
    except ValueError:  # a bad CONVEYOR_* setting: the command itself reports it
        return configs.PipelineConfig().logs_dir


def _dispatch(args: argparse.Namespace) -> int:
    from pipeline.home_lock import BUSY_EXIT_CODE, HomeBusy

    try:
        return args.func(args)
    except HomeBusy as exc:  # another process writes this home: try again later
        print(f"conveyor {args.command}: {exc}", file=sys.stderr)
        return BUSY_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
