"""`conveyor serve`: the model server on a home's pushed versions (serving/)."""
from __future__ import annotations

import argparse

from conveyor.cli import common


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="serve the pushed models (TF Serving REST and gRPC APIs)")
    common.add_home(parser, "output root holding serving_model/ (default outputs/)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=common.port, help="port (default 8501; 0 = any free port)")
    parser.add_argument("--grpc-port", type=common.port,
                        help="also serve TF Serving's gRPC API on this port (TF Serving's is 8500; 0 = any free port)")
    parser.add_argument("--workers", type=common.non_negative_int, help="worker processes sharing the port (default serving_workers; 0 = one per core)")
    parser.add_argument("--no-request-log", action="store_true", help="do not log predictions")
    parser.add_argument("--no-fold", action="store_true",
                        help="answer through the traced model call, never the folded one (CONVEYOR_SPEEDUPS=0 turns off every speedup)")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    config = common.load_config({"serving_workers": "--workers"}, home=common.local_home_arg(args), serving_workers=args.workers)
    common.existing_home(config, args, written=False)
    from schema import versions as schema_versions

    try:  # the domains the server applies: a tampered schema version is one line, before any worker starts
        schema_versions.in_force(config.home, config.schema_path)
    except schema_versions.VersionError as exc:
        raise common.CommandError(str(exc)) from None
    with common.quiet(config, "serve"):
        from serving import supervisor

        try:
            return supervisor.serve(config, host=args.host, port=args.port, log_requests=not args.no_request_log,
                                    grpc_port=args.grpc_port, fold=not args.no_fold)
        except OSError as exc:  # the address is taken or cannot be bound
            raise common.CommandError(str(exc)) from None
