"""examples/: the committed notebook is the one its script makes, and it runs from top to bottom."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "quickstart.py"
NOTEBOOK = SCRIPT.with_suffix(".ipynb")

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra: pip install -e '.[dev]'")


def _converter():
    spec = importlib.util.spec_from_file_location("make_notebook", ROOT / "scripts" / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_made_from_the_script():
    assert NOTEBOOK.read_text() == _converter().render(SCRIPT), (
        f"{NOTEBOOK} differs from {SCRIPT}; run: python scripts/make_notebook.py"
    )


def test_notebook_is_committed_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


def test_converter_splits_cells():
    notebook = _converter().script_to_notebook("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\nx\n")
    assert [(cell.cell_type, cell.source) for cell in notebook.cells] == [
        ("markdown", "# Title\n\ntext"),
        ("code", "x = 1"),
        ("code", "x"),
    ]


@pytest.mark.parametrize(
    ("script", "message"),
    [("x = 1\n# %%\n", "before the first"), ("# %% [raw]\n", "unknown cell marker"), ("# %% [markdown]\nx\n", "'# '")],
)
def test_converter_refuses_malformed_scripts(script, message):
    with pytest.raises(ValueError, match=message):
        _converter().script_to_notebook(script)


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    """Executes the notebook in a kernel of this Python (a kernelspec written for the test, so
    nothing needs ``ipykernel install``); outputs go to a temporary work folder."""
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra: pip install -e '.[dev]'")
    kernelspec = pytest.importorskip("ipykernel.kernelspec", reason="ipykernel is in the dev extra")
    # From here on a kernel that does not start is a failure, not a skip.
    kernel_name = "medsynth-examples-test"
    kernelspec.write_kernel_spec(tmp_path / "jupyter" / "kernels" / kernel_name)  # argv: this sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    work = tmp_path / "work"
    monkeypatch.setenv("MEDSYNTH_EXAMPLE_DIR", str(work))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name=kernel_name, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    assert (work / "real_vs_synthetic.png").stat().st_size > 10_000
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the figure was not shown"
    text = "".join(output.get("text", "") for output in outputs)
    assert "synthetic, loss" in text
    assert (work / "cohort" / "manifest.json").is_file()
