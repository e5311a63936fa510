"""Compile Conveyor for Kubeflow Pipelines v2 or Vertex AI (and optionally submit it).

    python kubeflow_runner.py --target kfp|vertex [--image IMAGE] [--pipeline-root gs://...] [options]

The same create_pipeline() as local_runner.py, compiled by KubeflowV2DagRunner into a pipeline
spec (YAML, `<home>/kubeflow/conveyor-kubeflow.yaml`) with every value fixed from flags and
CONVEYOR_* variables; without --image and --pipeline-root it holds placeholders and cannot be
submitted. See conveyor/kubeflow/compiler.py for the choices a cluster needs, `--help` for the
flags, docs/production.md for the workflow.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from conveyor.cli import main

if __name__ == "__main__":
    sys.exit(main(["kubeflow", *sys.argv[1:]]))
