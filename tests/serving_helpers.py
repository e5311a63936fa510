"""A writable copy of the small_run home for serving and monitoring tests."""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import configs


def copy_home(small_run, dest: Path, **overrides) -> configs.PipelineConfig:
    """A writable home with small_run's pushed versions and MLMD (artifacts stay where they are)."""
    source, _ = small_run
    dest.mkdir(parents=True)
    shutil.copytree(source.serving_root, dest / source.serving_root.name)
    shutil.copy2(source.metadata_path, dest / source.metadata_path.name)
    return source.replace(home=dest, **overrides)
