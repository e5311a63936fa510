"""One worker process of `conveyor serve` (started by serving/supervisor.py, not by hand).

    python -m serving.worker --fd N --ready-fd M [--log-fd L] --index I [--no-request-log] [--grpc-port P]
        [--request-ids FILE] [--no-fold]

Serves on the inherited listening socket N with the configuration in the CONVEYOR_* environment:
loads the serving version, starts answering, writes "ready <version>" (or "ready -") to the pipe M,
and answers until SIGTERM/SIGINT, or until its supervisor is gone.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys


def configure_logging(index: int, log_fd: int) -> None:
    """Warnings and the server's own INFO lines to `log_fd` (the command's stderr)."""
    stream = sys.stderr if log_fd == 2 else os.fdopen(log_fd, "w", buffering=1)
    logging.basicConfig(
        level=logging.WARNING, stream=stream,
        format=f"%(asctime)s worker {index} pid %(process)d %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("serving").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--log-fd", type=int, default=2, help="where log lines go (default stderr)")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--no-request-log", action="store_true")
    parser.add_argument("--grpc-port", type=int, help="serve gRPC on this port too (shared: SO_REUSEPORT)")
    parser.add_argument("--no-fold", action="store_true", help="answer through the traced model call, never folded")
    parser.add_argument("--request-ids", help="the workers' shared table of answered request ids (serving/request_ids.py)")
    args = parser.parse_args(argv)
    configure_logging(args.index, args.log_fd)

    from pipeline import configs
    from serving.server import Server

    config = configs.load()
    if config.tensorflow_intra_op_parallelism or config.tensorflow_inter_op_parallelism:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(config.tensorflow_intra_op_parallelism)
        tf.config.threading.set_inter_op_parallelism_threads(config.tensorflow_inter_op_parallelism)
    sock = socket.socket(fileno=args.fd)
    supervisor = os.getppid()

    def orphaned() -> None:
        if os.getppid() != supervisor:  # the supervisor died (kill -9): do not serve on alone
            logging.getLogger(__name__).error("supervisor %d is gone; stopping", supervisor)
            server.stop()

    server = Server(config, sock, log_requests=not args.no_request_log, worker=args.index, on_tick=orphaned,
                    grpc_port=args.grpc_port, request_ids=args.request_ids, fold=not args.no_fold)
    version = server.load()

    def ready() -> None:  # once it accepts and listens: a worker it replaces may stop then
        with os.fdopen(args.ready_fd, "w") as pipe:
            pipe.write(f"ready {version or '-'}\n")

    server.run(on_started=ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
