"""Reading runs back for people: MLMD look-ups and TFDV summaries (metadata/runs.py, analysis.py)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from conveyor import analysis
from metadata import connection, runs
from pipeline import configs


@pytest.fixture(scope="module")
def tiny_statistics():
    """Statistics of two small, known datasets."""
    first = pd.DataFrame({"fare": [1.0, 2.0, 3.0, 6.0], "payment_type": ["Cash", "Cash", "Card", None]})
    second = pd.DataFrame({"fare": [10.0, 20.0], "payment_type": ["Card", "Card"]})
    return tfdv.generate_statistics_from_dataframe(first), tfdv.generate_statistics_from_dataframe(second)


def test_feature_summaries_give_the_figures_of_the_data(tiny_statistics):
    first, _ = tiny_statistics
    assert analysis.num_examples(first) == 4
    fare, payment = analysis.feature_summaries(first)
    assert (fare.feature, fare.kind, fare.present, fare.mean, fare.minimum, fare.maximum) == ("fare", "numeric", 1.0, 3.0, 1.0, 6.0)
    assert math.isclose(fare.std_dev, math.sqrt(3.5))  # population std of 1, 2, 3, 6
    assert (payment.kind, payment.present, payment.unique, payment.top_value) == ("categorical", 0.75, 2, "Cash")
    assert math.isclose(payment.top_share, 2 / 3)


def test_compare_statistics_puts_two_datasets_side_by_side(tiny_statistics):
    table = analysis.compare_statistics(*tiny_statistics, "span 2", "span 1")
    assert list(table.index) == ["fare", "payment_type"]
    assert table.loc["fare", ("mean", "span 2")] == 3.0 and table.loc["fare", ("mean", "span 1")] == 15.0
    assert table.loc["payment_type", ("top_value", "span 1")] == "Card"
    assert table.loc["payment_type", ("present", "span 2")] == 0.75
    with pytest.raises(ValueError, match="different names"):
        analysis.compare_statistics(*tiny_statistics, "span 1", "span 1")


def test_statistics_by_span_follows_statisticsgen_inputs(blocked_run):
    config, summary = blocked_run
    store = connection.open_metadata(config)
    loaded = [runs.load_run(store, run_id) for run_id in runs.run_ids(store, config.pipeline_name)]
    assert [run.span for run in loaded] == [1, 2] and loaded[-1].run_id == summary.run_id
    by_span = runs.statistics_by_span(store, config.pipeline_name)
    assert {span: a.id for span, a in by_span.items()} == {
        run.span: run.output("StatisticsGen", "statistics").id for run in loaded
    }


def test_latest_execution_with_an_output_skips_runs_that_stopped_early(blocked_run, small_run):
    config, _ = blocked_run
    store = connection.open_metadata(config)
    evaluator = runs.latest_execution_with(store, config.pipeline_name, "Evaluator", "evaluation")
    first_run = runs.load_run(store, runs.run_ids(store, config.pipeline_name)[0])
    assert evaluator is not None
    assert evaluator.outputs["evaluation"][0].id == first_run.output("Evaluator", "evaluation").id
    assert runs.latest_run(store, config.pipeline_name).output("Evaluator", "evaluation") is None


def test_a_home_without_runs_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pipeline runs recorded under"):
        connection.open_metadata(configs.load(home=tmp_path / "empty"))
    assert not (tmp_path / "empty").exists()  # reading never creates a store
