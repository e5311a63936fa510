"""Run Conveyor locally: LocalDagRunner; MLMD on SQLite (or MySQL, CONVEYOR_MYSQL_*); Beam as configured.

    python local_runner.py [--spans-root DIR] [--home DIR] [--train-steps N] [--eval-steps N]
                           [--span N | --latest-only] [--beam-mode MODE] [--beam-workers N] [--verbose]
                           (--help lists the Beam settings for dataflow / flink / spark)

Quiet by default: one line per component as it finishes, then a summary. Full TFX logs go to a
file under <home>/logs (and to the console with --verbose).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from conveyor.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
