"""notebooks/evaluation.ipynb runs top to bottom in a fresh kernel and is committed with its outputs."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "evaluation.ipynb"


def test_notebook_is_committed_with_its_outputs() -> None:
    """The repository page shows the results: every code cell ran, in order, with plots, no errors."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for c in code for o in c.outputs) >= 4


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path) -> None:  # noqa: ANN001
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # ipykernel ships the "python3" kernelspec in sys.prefix; jupyter_client starts it with
    # sys.executable (this venv's interpreter), so no `ipykernel install` step is needed.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "chosen threshold" in text and "recall@5" in text
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 4

