"""The statistics layout Conveyor reads (pipeline/statistics_layout.py) is the one TFX writes."""
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts

from pipeline import statistics_layout


def test_the_layout_is_statistics_gens() -> None:
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = "gs://bucket/root/StatisticsGen/statistics/7"
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])

    for split in ("train", "eval"):
        assert statistics_layout.split_dir(artifact.uri, split) == artifact_utils.get_split_uri([artifact], split)
    assert statistics_layout.STATS_FILE == stats_artifact_utils.BINARY_PB_BASENAME
    assert statistics_layout.split_file(artifact.uri) == (
        "gs://bucket/root/StatisticsGen/statistics/7/Split-train/" + stats_artifact_utils.BINARY_PB_BASENAME
    )
