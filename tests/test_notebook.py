"""The example notebook runs from top to bottom, so it never rots, and its figures show inline."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.ipynb"


def test_walkthrough_notebook_runs_and_shows_its_figures():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    # The kernel inherits this process's environment, IMAGERANK_CACHE (set by conftest) included.
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    figure_cells = [cell for cell in notebook.cells if cell.cell_type == "code" and "plots." in cell.source]
    assert len(images) >= len(figure_cells) - 1, "every cell ending in a figure shows it inline"
    text = "".join(output.get("text", "") for output in outputs)
    assert "80 indexed" in text
    assert "mAP" in text
