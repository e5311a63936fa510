"""One measured pass of the data half of the pipeline, for benchmarks/scale_bench.py.

    python benchmarks/scale_run.py HOME SPANS_ROOT BEAM_MODE BEAM_WORKERS

Runs create_pipeline()'s own components up to Transform (CsvExampleGen, StatisticsGen,
ImportSchemaGen, ExampleValidator, DataGate, the span window, Transform) on span 1, cold.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA_NODES = (
    "CsvExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "previous_statistics",
    "DataGate",
    "span_window",
    "analyzer_cache",
    "Transform",
)


def main(home: str, spans_root: str, mode: str, workers: str) -> None:
    from absl import logging
    from tfx import v1 as tfx

    from metadata import connection
    from pipeline import configs
    from pipeline.pipeline import create_components

    config = configs.load(home=Path(home), spans_root=Path(spans_root), span=1, beam_mode=mode, beam_workers=int(workers))
    logging.set_verbosity(logging.INFO)  # the launcher's per-component lines, which timed_run reads
    components = [c for c in create_components(config) if c.id in DATA_NODES]
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name=config.pipeline_name,
            pipeline_root=config.pipeline_root_uri,
            components=components,
            enable_cache=False,
            metadata_connection_config=connection.connection_config(config),
            beam_pipeline_args=config.beam_args(),
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
