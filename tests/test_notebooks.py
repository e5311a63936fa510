"""notebooks/ run headless (nbclient, a real ipykernel) against real pipeline runs; a cell error fails."""
from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from metadata import connection, runs
from pipeline.configs import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def execute(name: str, home: os.PathLike, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every cell of notebooks/`name` with CONVEYOR_HOME=`home`; all outputs as one text."""
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    # The kernel imports this checkout's packages, whichever checkout the venv was installed from.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.extend(str(output.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/html"))
    return "\n".join(texts)


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), path.name
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {"data_validation.ipynb", "model_analysis.ipynb"}


def test_data_validation_notebook_shows_the_latest_span(blocked_run, monkeypatch):
    config, summary = blocked_run
    text = execute("data_validation.ipynb", config.home, monkeypatch)
    assert f"latest run: {summary.run_id}, ingested span 2" in text
    assert "Bitcoin" in text  # TFDV's anomaly table for the unknown payment type
    assert "DataGate: FAILED (span blocked before training)" in text
    assert "no drift check in this run" in text
    assert "comparing span 2 (train) with span 1 (train)" in text
    assert "facets-overview" in text  # tfdv.visualize_statistics rendered its view


def test_model_analysis_notebook_shows_the_latest_evaluation(blocked_run, small_run, monkeypatch):
    config, _ = blocked_run  # its latest run stopped at DataGate: the evaluation is small_run's
    _, first = small_run
    store = connection.open_metadata(config)
    evaluated = runs.load_run(store, first.run_id)
    text = execute("model_analysis.ipynb", config.home, monkeypatch)
    assert f"evaluation: ModelEvaluation #{evaluated.output('Evaluator', 'evaluation').id}" in text
    assert f"candidate: Model #{evaluated.output('Trainer', 'model').id}" in text
    assert "baseline: none (nothing was serving)" in text
    assert f"{first.evaluation.metrics['overall']['binary_accuracy']:.6f}" in text  # the metrics table
    assert "payment_type=Credit Card" in text
    assert "no baseline: this is the first model evaluated" in text
    assert "TFMA validation_ok (before the blessing rule): True" in text
    assert f"ModelBlessing #{evaluated.output('Evaluator', 'blessing').id}: BLESSED" in text


def test_a_notebook_without_runs_fails_with_the_reason(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError, match="no pipeline runs recorded under"):
        execute("model_analysis.ipynb", tmp_path / "empty-home", monkeypatch)
