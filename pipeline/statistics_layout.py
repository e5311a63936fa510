"""Where a statistics artifact keeps each split's TFDV statistics: StatisticsGen's layout, which
DataGate's validated statistics copy (`<uri>/Split-<split>/FeatureStats.pb`).

Dependency-free on purpose: the server and the CT controller read push records with it and must
not import TFX to do so. tests/test_statistics_layout.py holds it to TFX's own constants.
"""
from __future__ import annotations

import os

STATS_FILE = "FeatureStats.pb"
TRAIN_SPLIT = "train"


def split_dir(statistics_uri: str, split: str = TRAIN_SPLIT) -> str:
    """One split's directory in a statistics artifact (a path or a URI: no Path(), it folds "//")."""
    return os.path.join(statistics_uri, f"Split-{split}")


def split_file(statistics_uri: str, split: str = TRAIN_SPLIT) -> str:
    """One split's TFDV statistics file in a statistics artifact."""
    return os.path.join(split_dir(statistics_uri, split), STATS_FILE)
