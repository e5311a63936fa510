"""Transform with the analyzer cache analyses only the spans the cache does not hold.

TFX's Transform executor on real validated examples (small_run's): a first pass over span "a"
writes the cache; span a's train files are then overwritten with garbage, and a second pass over
the window [a, b] with that cache still succeeds, so it never read span a, and its updated cache
holds both spans (what the next span's Transform gets through the analyzer_cache resolver).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tfx.components.transform import executor as transform_executor
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as specs

from pipeline import configs, user_code


def _examples(source: str, target: Path) -> standard_artifacts.Examples:
    shutil.copytree(source, target)
    artifact = standard_artifacts.Examples()
    artifact.uri = str(target)
    artifact.split_names = json.dumps(["train", "eval"])
    return artifact


def _transform(examples, schema, cache, out: Path) -> standard_artifacts.TransformCache:
    graph, updated = standard_artifacts.TransformGraph(), standard_artifacts.TransformCache()
    for artifact, name in ((graph, "graph"), (updated, "cache")):
        artifact.uri = str(out / name)
        (out / name).mkdir(parents=True)
    inputs = {specs.EXAMPLES_KEY: examples, specs.SCHEMA_KEY: [schema]}
    if cache is not None:
        inputs[specs.ANALYZER_CACHE_KEY] = [cache]
    context = transform_executor.base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=configs.PipelineConfig().beam_args(), tmp_dir=str(out / "tmp"), unique_id="t"
    )
    transform_executor.Executor(context).Do(
        inputs,
        {specs.TRANSFORM_GRAPH_KEY: [graph], specs.UPDATED_ANALYZER_CACHE_KEY: [updated]},
        {specs.PREPROCESSING_FN_KEY: user_code.PREPROCESSING_FN, specs.SPLITS_CONFIG_KEY: None,
         specs.FORCE_TF_COMPAT_V1_KEY: 0, specs.DISABLE_STATISTICS_KEY: 1},
    )
    return updated


def test_a_cached_span_is_not_read_again(small_run, tmp_path):
    config, _ = small_run
    root = config.pipeline_root
    [validated] = sorted((root / "DataGate" / "validated_examples").iterdir())
    [schema_dir] = sorted((root / "ImportSchemaGen" / "schema").iterdir())
    schema = standard_artifacts.Schema()
    schema.uri = str(schema_dir)
    a, b = _examples(str(validated), tmp_path / "a"), _examples(str(validated), tmp_path / "b")

    cache = _transform([a], schema, None, tmp_path / "first")
    assert len(list(Path(cache.uri).iterdir())) == 1  # one entry: span a's train split

    for data in Path(a.uri, "Split-train").iterdir():
        data.write_bytes(b"not a gzipped TFRecord: reading this fails")
    updated = _transform([a, b], schema, cache, tmp_path / "second")
    assert len(list(Path(updated.uri).iterdir())) == 2  # a (carried over) and b (analysed now)
