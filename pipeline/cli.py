"""`conveyor`: the command-line front door.

    conveyor run [options]         run the pipeline locally (see local_runner.py)
    conveyor lineage [--version V] what made a pushed model (default: the one serving now)
    conveyor kubeflow [options]    compile for Kubeflow Pipelines v2 / Vertex AI (see kubeflow_runner.py)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def spans_to_run(config: configs.PipelineConfig, latest_only: bool) -> list[int | None]:
    """Spans to ingest, oldest first: each span on disk newer than the newest one ingested.

    [None] (the newest span) when nothing is pending, so a re-run re-checks the newest span.
    """
    from data import spans_io
    from pipeline import metadata

    on_disk = spans_io.existing_spans(config.spans_root)
    if not on_disk:
        raise SystemExit(f"no spans under {config.spans_root} (expected span-N/{spans_io.SPAN_FILE})")
    if config.span is not None:
        return [config.span]
    if latest_only or not metadata.store_exists(config):
        ingested: set[int] = set()
    else:
        ingested = metadata.ingested_spans(metadata.open_store(metadata.connection_config(config)), config.pipeline_name)
    newest = max(ingested, default=0)
    pending = [s for s in on_disk if s > newest]
    if latest_only or not pending:
        return [None]
    return pending


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_run, metadata

    config = _load(
        spans_root=args.spans_root,
        home=args.home,
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        span=args.span,
        window_spans=args.window_spans,
        enable_cache=False if args.no_cache else None,
        **_beam_overrides(args),
    )
    spans = spans_to_run(config, args.latest_only)
    for span in spans:
        label = f"span {span}" if span is not None else "newest span"
        where = metadata.describe(metadata.connection_config(config))
        print(f"conveyor: running {config.pipeline_name} on {label} (home: {config.home}, metadata: {where})", flush=True)
        summary = local_run.run(config.replace(span=span), verbose=args.verbose)
        print(local_run.format_summary(summary), flush=True)
        if not summary.ok or summary.missing_metrics:
            return 1
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from pipeline import lineage
    from pipeline.progress import quiet_logs

    config = _load(home=args.home)
    error = None
    with quiet_logs(config.logs_dir / "lineage.log", args.verbose):  # TensorFlow and MLMD chatter
        try:
            found = lineage.for_config(config, args.version)
        except lineage.LineageError as exc:
            error = exc
    if error:
        print(f"conveyor lineage: {error}", file=sys.stderr)
        return 1
    print(lineage.format_lineage(found))
    return 0


def _add_kubeflow_args(parser: argparse.ArgumentParser) -> None:
    from pipeline import kubeflow

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
    submit = parser.add_argument_group("submitting")
    submit.add_argument("--submit", action="store_true", help="send the compiled spec to the target")
    submit.add_argument("--endpoint", default=os.environ.get("KF_PIPELINES_ENDPOINT"), help="kfp: the KFP API URL")
    submit.add_argument("--experiment", default="conveyor", help="kfp: experiment name")
    submit.add_argument("--service-account", help="vertex: the service account runs use")


def cmd_kubeflow(args: argparse.Namespace) -> int:
    from pipeline import kubeflow

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
            )
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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the pipeline locally")
    _add_run_args(run_parser)
    run_parser.set_defaults(func=cmd_run)
    lineage_parser = commands.add_parser("lineage", help="what made a pushed model")
    lineage_parser.add_argument("--version", help="pushed version (default: the one serving now)")
    lineage_parser.add_argument("--home", type=Path, help="output root the pipeline ran in")
    lineage_parser.add_argument("--verbose", action="store_true", help="TensorFlow and MLMD logs on the console")
    lineage_parser.set_defaults(func=cmd_lineage)
    kubeflow_parser = commands.add_parser("kubeflow", help="compile (and submit) for Kubeflow Pipelines v2 / Vertex AI")
    _add_kubeflow_args(kubeflow_parser)
    kubeflow_parser.set_defaults(func=cmd_kubeflow)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
