"""Every notebook under notebooks/ runs (slow: executed on the tiny world with nbclient, as CI does) and is
committed executed (fast: outputs present, no errors, small, no paths of the machine that ran it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MAX_BYTES = 400_000  # committed notebooks stay small: pictures as JPEG, logs trimmed


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/*.ipynb not found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed(path: Path):
    text = path.read_text()
    nb = json.loads(text)
    cells = _code_cells(nb)
    counts = [c.get("execution_count") for c in cells]
    assert all(isinstance(n, int) for n in counts), (
        f"{path.name}: run every cell before committing ({counts})"
    )
    assert counts == sorted(counts), (
        f"{path.name}: cells were run out of order ({counts}); restart and run all"
    )
    outputs = [o for c in cells for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output: {errors[0].get('ename')}"
    assert all(c.get("outputs") for c in cells), f"{path.name}: a code cell has no output"
    if "show(" in text:
        assert any("image/jpeg" in o.get("data", {}) or "image/png" in o.get("data", {}) for o in outputs)
    assert len(text.encode()) < MAX_BYTES, f"{path.name} is {len(text.encode())} bytes; keep outputs small"
    for marker in ("/work/", "/tmp/", "/home/", "/root/"):
        leaked = [o for o in outputs if marker in json.dumps(o)]
        assert not leaked, f"{path.name}: an output shows a path of the machine that ran it ({marker})"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, tiny_world: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the dev extra installs ipykernel")
    # the kernel and the processes it starts find multipose and the session's tiny world
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("MULTIPOSE_DATA", str(tiny_world.parent))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    assert all(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    if path.name == "quickstart.ipynb":  # its run drew the pictures it shows
        assert (tmp_path / "logs" / "notebook" / "pictures" / "learning_curves.png").is_file()
