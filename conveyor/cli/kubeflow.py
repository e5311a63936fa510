"""`conveyor kubeflow`: compile (and submit) for Kubeflow Pipelines v2 / Vertex AI (conveyor/kubeflow/).

`conveyor kubeflow --target kfp|vertex` alone compiles: what only a deployment knows (the image,
the bucket) defaults to the documented placeholders, which the output names and --submit refuses.
Every flag is checked before TFX is imported, and everything wrong is said in one line.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from conveyor.cli import common
from conveyor.cli.run import add_beam_args, beam_overrides
from conveyor.kubeflow import compiler
from pipeline import configs

IMAGE_VARIABLE = configs.ENV_PREFIX + "IMAGE"
SPEC_DIR = "kubeflow"  # the spec's folder in the home
CHECK_IMAGE = "conveyor:local-check"  # the image --check-locally names in its specs (nothing pulls it)
# Flags of one mode that the other does not use: given there, they are refused rather than ignored.
COMPILE_ONLY = ("home", "output", "pipeline_root", "serving_root", "data_root", "schema", "span", "submit")
CHECK_ONLY = ("spans_root", "check_dir")
FLAGS = {"remote_pipeline_root": "--pipeline-root", "remote_serving_root": "--serving-root",
         "remote_spans_root": "--data-root", "remote_schema": "--schema"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("kubeflow", help="compile (and submit) for Kubeflow Pipelines v2 / Vertex AI")
    parser.add_argument("--target", choices=compiler.TARGETS, required=True, help="Kubeflow Pipelines or Vertex AI")
    parser.add_argument(
        "--image",
        default=os.environ.get(IMAGE_VARIABLE) or None,
        help=f"the image built from the Dockerfile and pushed (default ${IMAGE_VARIABLE}, else the placeholder "
        f"{compiler.PLACEHOLDER_IMAGE}: the spec compiles, --submit refuses it)",
    )
    parser.add_argument(
        "--pipeline-root",
        help=f"URI runs write under, e.g. gs://bucket/conveyor (default ${configs.ENV_PREFIX}REMOTE_PIPELINE_ROOT, "
        f"else the placeholder {compiler.PLACEHOLDER_ROOT}: the spec compiles, --submit refuses it)",
    )
    parser.add_argument("--serving-root", help="URI pushed models go to (default <pipeline-root>/serving_model)")
    parser.add_argument("--data-root", help="URI of the span-N/ folders (default <pipeline-root>/spans)")
    parser.add_argument("--schema", help="schema file the container reads (default: the image's copy)")
    common.add_home(parser, "the home the spec and the log go to (default outputs/, or $CONVEYOR_HOME)")
    parser.add_argument("--output", type=Path, help=f"spec file to write (default <home>/{SPEC_DIR}/{compiler.SPEC_FILE})")
    parser.add_argument(
        "--span",
        type=common.non_negative_int,
        help="the span runs ingest, compiled in. Without it: kfp compiles with caching off and each run ingests "
        "the newest span at run time (KFP runs no ExampleGen driver, so a cached run would reuse an earlier "
        "span's examples); vertex ingests the newest span at run time, with caching (Vertex runs TFX's ExampleGen "
        "driver before its cache check)",
    )
    parser.add_argument("--window-spans", type=common.positive_int)
    parser.add_argument("--train-steps", type=common.positive_int)
    parser.add_argument("--eval-steps", type=common.positive_int)
    parser.add_argument("--no-cache", action="store_true", help="compile with caching off")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="compile the tuning run (TFX's Tuner before the Trainer, as `conveyor tune`; its budget from "
        "CONVEYOR_TUNE_*); with --check-locally, the last span is also run tuned",
    )
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
    misplaced = _other_modes_flags(args)
    if args.check_locally:
        if misplaced:
            raise common.CommandError(misplaced)
        return _check_locally(args)
    config, image = _checked(args, [misplaced] if misplaced else [])
    common.writable_home(config, args)
    output = args.output or config.home / SPEC_DIR / compiler.SPEC_FILE
    with common.quiet(config, "kubeflow"):
        return _compile(args, config, image, output)


def _other_modes_flags(args: argparse.Namespace) -> str | None:
    """A phrase naming the flags given that only the other mode (compiling, or --check-locally) uses."""
    unused = COMPILE_ONLY if args.check_locally else CHECK_ONLY
    given = [f"--{name.replace('_', '-')}" for name in unused if _set(getattr(args, name))]
    if not given:
        return None
    if args.check_locally:
        return (f"--check-locally does not use {', '.join(given)} "
                "(it checks every span of --spans-root, writing only under --check-dir)")
    return f"{', '.join(given)}: only --check-locally uses {'them' if len(given) > 1 else 'it'}"


def _set(value: object) -> bool:
    """Whether the command line set a flag: any value but the parser's defaults None and False (0 is a value)."""
    return value is not None and value is not False


def _checked(args: argparse.Namespace, problems: list[str]) -> tuple[configs.PipelineConfig, str]:
    """The cluster config and the image, or one CommandError naming everything wrong (`problems`
    found already, then every flag's); TFX is not imported."""
    if args.image == "":
        problems.append(f"--image '': expected the image built from the Dockerfile and pushed ({compiler.PLACEHOLDER_IMAGE})")
    image = compiler.PLACEHOLDER_IMAGE if args.image is None else args.image
    home = None
    try:
        home = common.local_home_arg(args)
    except common.CommandError as exc:
        problems.append(str(exc))
    where = dict(
        home=home,
        remote_pipeline_root=args.pipeline_root,
        remote_serving_root=args.serving_root,
        remote_spans_root=args.data_root,
        remote_schema=args.schema,
        gcp_project=args.gcp_project,
        gcp_region=args.gcp_region,
    )
    try:  # the locations alone first: a bad Beam or training setting must not hide them
        located = common.load_config(FLAGS, **where)
    except common.CommandError as exc:
        raise common.CommandError("; ".join([*problems, str(exc)])) from None
    located = located.replace(remote_pipeline_root=located.remote_pipeline_root or compiler.PLACEHOLDER_ROOT)
    problems += compiler.location_problems(located)
    if args.submit:
        problems += compiler.submit_problems(located, args.target, image, args.endpoint)
    kfp_newest = args.target == "kfp" and args.span is None  # no driver: the newest span only uncached
    try:
        config = common.load_config(
            FLAGS,
            **where,
            span=args.span,
            window_spans=args.window_spans,
            train_steps=args.train_steps,
            eval_steps=args.eval_steps,
            enable_cache=False if args.no_cache or kfp_newest else None,
            tune=args.tune or None,
            **{k: v for k, v in beam_overrides(args).items() if k not in where},
        )
    except common.CommandError as exc:
        problems.append(str(exc))
    if problems:
        raise common.CommandError("; ".join(problems))
    try:
        return compiler.cluster_config(config.replace(remote_pipeline_root=located.remote_pipeline_root), args.target), image
    except ValueError as exc:
        raise common.CommandError(str(exc)) from None


def _compile(args: argparse.Namespace, config: configs.PipelineConfig, image: str, output: Path) -> int:
    try:
        spec = compiler.compile_spec(config, image, output)
    except ValueError as exc:
        raise common.CommandError(str(exc)) from None
    common.say(f"conveyor kubeflow: wrote {output} ({args.target}, image {image})\n{compiler.summary(spec)}")
    if config.span is None:
        why = (", with caching off: KFP runs no ExampleGen driver (--span N compiles one in, with caching)" if args.target == "kfp"
               else " (Vertex runs TFX's ExampleGen driver before its cache check)")
        common.say(f"span: none compiled in; each run ingests the newest span under {config.remote_spans_root} at run time{why}")
    found = compiler.placeholders(config, image)
    if found:
        common.say(
            f"NOT DEPLOYABLE: placeholders {', '.join(found)}; build and push the image (see Dockerfile), "
            "then compile again with the real values (--submit refuses placeholders)"
        )
    if not args.submit:
        return 0
    try:
        if args.target == "kfp":
            run = compiler.submit_kfp(output, config, args.endpoint, args.experiment)
        else:
            run = compiler.submit_vertex(output, config, args.service_account)
    except compiler.SubmitError as exc:
        raise common.CommandError(str(exc), common.EXIT_FAILED) from None
    common.say(f"conveyor kubeflow: submitted {run}")
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
    image = args.image or CHECK_IMAGE
    try:
        result = local_check.run(config, args.target, image, check_dir, tune=args.tune)
    except ValueError as exc:
        raise common.CommandError(str(exc)) from None
    return 0 if result.ok else common.EXIT_FAILED
