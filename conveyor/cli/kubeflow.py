"""`conveyor kubeflow`: compile (and submit) for Kubeflow Pipelines v2 / Vertex AI (conveyor/kubeflow/)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from conveyor.cli import common
from conveyor.cli.run import add_beam_args, beam_overrides
from conveyor.kubeflow import compiler
from pipeline import configs


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("kubeflow", help="compile (and submit) for Kubeflow Pipelines v2 / Vertex AI")
    parser.add_argument("--target", choices=compiler.TARGETS, required=True, help="Kubeflow Pipelines or Vertex AI")
    parser.add_argument("--image", default=os.environ.get("CONVEYOR_IMAGE"), help="container image (see Dockerfile)")
    parser.add_argument("--pipeline-root", help="URI of the pipeline root, e.g. gs://bucket/conveyor")
    parser.add_argument("--serving-root", help="URI pushed models go to (default <pipeline-root>/serving_model)")
    parser.add_argument("--data-root", help="URI of the span-N/ folders (default <pipeline-root>/spans)")
    parser.add_argument("--schema", help="schema file the container reads (default: the image's copy)")
    parser.add_argument("--output", type=Path, help="spec file to write (default outputs/conveyor-kubeflow.yaml)")
    parser.add_argument("--span", type=common.non_negative_int, help="ingest exactly this span (default: the newest at run time)")
    parser.add_argument("--window-spans", type=common.positive_int)
    parser.add_argument("--train-steps", type=common.positive_int)
    parser.add_argument("--eval-steps", type=common.positive_int)
    parser.add_argument("--no-cache", action="store_true", help="compile with caching off")
    add_beam_args(parser)
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
    parser.set_defaults(func=kubeflow)


def kubeflow(args: argparse.Namespace) -> int:
    if args.check_locally:
        return _check_locally(args)
    with common.quiet(configs.load(), "kubeflow"):
        return _compile(args)


def _compile(args: argparse.Namespace) -> int:
    flags = {"remote_pipeline_root": "--pipeline-root", "remote_serving_root": "--serving-root",
             "remote_spans_root": "--data-root", "remote_schema": "--schema"}
    try:
        config = compiler.cluster_config(
            common.load_config(
                flags,
                remote_pipeline_root=args.pipeline_root,
                remote_serving_root=args.serving_root,
                remote_spans_root=args.data_root,
                remote_schema=args.schema,
                span=args.span,
                window_spans=args.window_spans,
                train_steps=args.train_steps,
                eval_steps=args.eval_steps,
                enable_cache=False if args.no_cache else None,
                **beam_overrides(args),
            ),
            args.target,
        )
        output = args.output or configs.REPO_ROOT / "outputs" / compiler.SPEC_FILE
        spec = compiler.compile_spec(config, args.image, output)
    except ValueError as exc:
        raise common.CommandError(str(exc)) from None
    print(f"conveyor kubeflow: wrote {output} ({args.target}, image {args.image})\n{compiler.summary(spec)}")
    if not args.submit:
        return 0
    try:
        if args.target == "kfp":
            run = compiler.submit_kfp(output, config, args.endpoint, args.experiment)
        else:
            run = compiler.submit_vertex(output, config, args.service_account)
    except compiler.SubmitError as exc:
        raise common.CommandError(str(exc), common.EXIT_FAILED) from None
    print(f"conveyor kubeflow: submitted {run}")
    return 0


def _check_locally(args: argparse.Namespace) -> int:
    import tempfile

    from conveyor.kubeflow import local_check

    config = common.load_config(
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
        raise common.CommandError(str(exc)) from None
    return 0 if result.ok else common.EXIT_FAILED
