"""A writable copy of the small_run home for serving and monitoring tests; fake pushed versions."""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import configs, versions


def copy_home(small_run, dest: Path, **overrides) -> configs.PipelineConfig:
    """A writable home with small_run's pushed versions and MLMD (artifacts stay where they are)."""
    source, _ = small_run
    dest.mkdir(parents=True)
    shutil.copytree(source.serving_root, dest / source.serving_root.name)
    shutil.copy2(source.metadata_path, dest / source.metadata_path.name)
    return source.replace(home=dest, **overrides)


def publish_fake(serving_root: Path, version: str, record: dict | None = None) -> Path:
    """Push a placeholder "model" (saved_model.pb and a variables file, not loadable) through the
    real two steps, stage then publish: for tests of the serving-root rule."""
    model = Path(serving_root).parent / f".fake-model-{version}"
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / versions.READY_FILE).write_bytes(b"graph")
    versions.stage(str(model), serving_root, version)
    shutil.rmtree(model)
    return Path(versions.publish(serving_root, version, record or {}))
