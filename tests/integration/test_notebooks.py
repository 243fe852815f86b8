"""The notebooks run: each is executed top to bottom in a fresh kernel (nbclient), on a shortened budget
(GROKSCOPE_NOTEBOOK_STEPS), in an empty folder, and what it computed is checked against the store it wrote. The
notebooks are kept without outputs."""

from __future__ import annotations

import json
import os
import re

import pytest

import grokscope as gs

from conftest import ROOT, extra_module

NOTEBOOKS = ROOT / "notebooks"
STEPS = 300  # 3 defect measurements after θ₀ at the notebooks' cadence of 100 steps


def _need(module: str):
    """A module of the `notebooks` extra (`conftest.extra_module`: fails under CI, skips elsewhere)."""
    return extra_module(module, "notebooks")


def _run(name: str, folder, monkeypatch) -> list[dict]:
    """Execute notebook `name` in `folder` with this checkout's package; its code cells, outputs filled in."""
    nbformat, nbclient = _need("nbformat"), _need("nbclient")
    monkeypatch.setenv("GROKSCOPE_NOTEBOOK_STEPS", str(STEPS))
    monkeypatch.setenv("GROKSCOPE_NOTEBOOK_RUNS", str(folder / "runs"))  # where the site's build puts them too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell) -> str:
    return "\n".join(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
                   for o in cell.outputs)


def _images(cells) -> int:
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs)


@pytest.mark.parametrize("name", ["geometry_in_minutes.ipynb", "monitor_your_model.ipynb", "monitor_hf_model.ipynb"])
def test_the_notebooks_are_stored_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_geometry_in_minutes(tmp_path, monkeypatch):
    cells = _run("geometry_in_minutes.ipynb", tmp_path, monkeypatch)
    runs = gs.find_runs([tmp_path / "runs" / "geometry-in-minutes"])
    assert sorted(r.config().seed for r in runs) == [42, 137]
    shown = "\n".join(_text(c) for c in cells)
    for run in runs:
        assert run.table("defect").step.tolist() == [0, 100, 200, 300]  # gs.train honoured the preset's defect_every
        assert run.summary()["steps_trained"] == STEPS
        pc1 = gs.stored_analysis(run, "summary")["pc1_mean"]
        assert pc1 is not None and 0 < pc1 <= 100
        row = re.search(rf"{re.escape(run.path.name)}\s+(\S+)\s+(\S+)", shown)  # the table: run, grok step, PC1 %
        assert row and row.group(2) == f"{pc1:.1f}", row
        assert re.search(rf"^{re.escape(run.path.name)}: (onset|cannot be tested)", shown, re.M)
    assert _images(cells) == 2  # loss and accuracy; the defect curve


@pytest.mark.slow
def test_monitor_your_model(tmp_path, monkeypatch):
    cells = _run("monitor_your_model.ipynb", tmp_path, monkeypatch)
    run = gs.RunDir(tmp_path / "runs" / "monitor-your-model")
    shown = "\n".join(_text(c) for c in cells)
    assert sorted(run.metrics().step.unique()) == [100, 200, 300]
    assert run.table("defect").step.tolist() == [0, 100, 200, 300]
    summary = run.summary()
    assert f"stopped at step {summary['steps_trained']}; grok step {summary['grok_step']['add']};" in shown
    detector = re.search(r"^detector: (.+)$", shown, re.M)
    chosen = summary["monitor"]["detector"]
    assert detector and detector.group(1) == f"{chosen['running']} ({chosen['reason']})"
    warnings = run.table("warnings").step.tolist() if run.has_table("warnings") else []
    assert shown.count("grokscope early warning at step") >= len(warnings)  # printed live, then listed again
    page = run.path / "report" / "index.html"  # build_report's page, with its early-warning section
    assert page.is_file() and "early warning" in page.read_text().lower()
    assert _images(cells) == 1


@pytest.mark.slow
def test_monitor_hf_model(tmp_path, monkeypatch):
    _need("transformers")  # the notebooks extra brings it
    cells = _run("monitor_hf_model.ipynb", tmp_path, monkeypatch)
    run = gs.RunDir(tmp_path / "runs" / "monitor-hf-gpt2")
    shown = "\n".join(_text(c) for c in cells)
    assert json.loads((run.path / "monitor.json").read_text())["model"] == "GPT2LMHeadModel"
    assert sorted(run.metrics().step.unique()) == [100, 200, 300]
    assert run.table("defect").step.tolist() == [0, 100, 200, 300]
    assert "watched: transformer.h.0.attn.c_attn.weight, transformer.h.0.attn.c_proj.weight\n" in shown
    summary, test = run.summary(), run.metrics().query("split == 'test'").sort_values("step")
    assert (f"stopped at step {summary['steps_trained']}; test accuracy {test.acc.iloc[-1]:.3f}; "
            f"grok step {summary['grok_step']['add']}") in shown
    chosen = summary["monitor"]["detector"]
    assert f"detector: {chosen['running']} ({chosen['reason']})" in shown
    warnings = run.table("warnings").step.tolist() if run.has_table("warnings") else []
    assert [int(s) for s in re.findall(r"early warning at step (\d+):", shown)][len(warnings):] == warnings
    assert ("no warning" in shown) == (not warnings)
    assert _images(cells) == 1
