"""The static HTML report: figures from a real tiny store (plus stored analysis tables), valid PNGs, a page
that loads in a headless browser with every image decoded, the CLI, and the pure plot functions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from grokscope.cli import main
from grokscope.config import with_overrides
from grokscope.geometry.onset import fit_power_law
from grokscope.report import ReportConfig, build_report, plots
from grokscope.store import RunDir, write_json
from grokscope.sweep.batch import train_with_probes

from conftest import headless_dom, tiny_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GROKS, LEADS = (1000, 2000, 4000), (300, 700, 1800)  # synthetic runs: lead ≈ 0.3 · (t_grok/1000)^1.3


def _synthetic_run(store: Path, like: RunDir, name: str, wd: float, grok: int, lead: int) -> None:
    """A run folder with config/metrics/summary/defect tables whose defect onset is exactly grok − lead."""
    cfg = with_overrides(like.config(), wd=wd, tag=name)
    d = RunDir(store / name)
    d.write_config(cfg)
    steps = np.arange(0, grok + 500, 100)
    acc = (steps >= grok).astype(float)
    rows = [{"run": 0, "step": int(s), "task": "add", "split": sp, "loss": 1.0, "acc": float(a),
             "weight_norm": 10.0} for s, a in zip(steps, acc, strict=True) for sp in ("train", "test")]
    d.write_table("metrics", pd.DataFrame(rows))
    onset = grok - lead
    D = np.where(steps >= onset, 1e3, 1.0)  # baseline 1: onset where D first exceeds 10× and 20
    d.write_table("defect", pd.DataFrame({"run": 0, "step": steps, "defect": D}))
    write_json(d.file("summary.json"), {"name": cfg.name, "grok_step": {"add": grok},
                                        "final_acc": {"add": {"train": 1.0, "test": 1.0}},
                                        "steps_trained": int(steps[-1]), "finished": True})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Two real tiny runs (inline defects every 50 steps), three synthetic grokking runs for the lead law,
    and analysis outputs in the stored formats (hessian, fragility, reconstruction, a scan, claims)."""
    root = tmp_path_factory.mktemp("store")
    cfgs = [tiny_config(seed=s, steps=150, defect_every=50, defect_draws=3) for s in (0, 1)]
    res = train_with_probes(cfgs, root)
    real = [RunDir(r.path) for r in res]
    for i, (grok, lead) in enumerate(zip(GROKS, LEADS, strict=True)):
        _synthetic_run(root, real[0], f"synth-{i}", wd=[0.1, 0.5, 1.0][i], grok=grok, lead=lead)
    for j, r in enumerate(real):
        r.write_table("hessian", pd.DataFrame(
            {"step": [0, 100, 200] * 2, "loss": ["total"] * 3 + ["add"] * 3,
             "lambda_min": [-1.0 - j, -3.0 - j, -2.0, -0.5, -1.5, -1.0], "lambda_max": [5.0] * 6,
             "exec_curv": [0.0] * 6, "perp_curv": [0.0] * 6}))
        r.write_table("reconstruction", pd.DataFrame(
            {"run": r.path.name, "step": 150, "k": [1, 2, 3], "task": "add", "train_acc": [0.1, 0.5, 1.0],
             "test_acc": [0.1, 0.5, 0.95], "cumulative": [0.8, 0.9, 0.95],
             "delta_captured": [0.8, 0.9, 0.95]}))
        write_json(r.file("fragility.json"), {"k_star": 3, "cumulative_at_k_star": 0.95, "threshold": 0.9})
        r.write_table("fragility", pd.DataFrame(
            {"run": r.path.name, "step": 150, "kind": ["svd", "svd", "prune", "prune", "scale", "scale"],
             "value": [8.0, 16.0, 0.5, 0.9, 0.95, 1.05], "size": np.nan, "task": "add",
             "train_acc": [0.2, 0.9, 0.1, 0.8, 0.3, 0.3], "test_acc": [0.1, 0.8, 0.1, 0.7, 0.2, 0.2],
             "delta_kept": [0.5, 0.8, 0.5, 0.9, 0.95, 1.05]}))
    scan_dir = real[0].path / "intervene-deletion"
    scan_dir.mkdir()
    scan = pd.DataFrame({"kind": "deletion", "value": [0.01, 0.1, 0.5], "task": "add",
                         "grok_step": pd.array([150, None, None], dtype="Int64"), "delta_pct": np.nan,
                         "steps_trained": pd.array([200, 200, 200], dtype="Int64")})
    scan.to_parquet(scan_dir / "intervention.parquet")
    write_json(root / "claims_p2.json", [
        {"claim": "lead ∝ t_grok^α <check>", "paper": "α = 1.27 ± 0.03", "measured": "α = 1.30",
         "verdict": "reproduced"},
        {"claim": "ρ ≈ 1 & exec < random", "paper": "1.000", "measured": "0.999", "verdict": "partly"}])
    return root


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    """The report of `store`, with ρ computed by `geometry_summary` (3 draws)."""
    return build_report(store, tmp_path_factory.mktemp("report"), ReportConfig(compute_summary=True, draws=3))


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_report_figures_are_valid_pngs(store, report):
    res, out = report, report.index.parent
    page = res.index.read_text()
    srcs = _img_sources(page)
    assert srcs and sorted(srcs) == sorted(f.name for f in res.figures)
    for src in srcs:
        f = out / src
        assert f.read_bytes()[:8] == PNG_MAGIC
        img = imread(f)  # decodes the whole file
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    drawn = {Path(s).stem for s in srcs}
    assert {"accuracy", "pc1", "defect", "rho", "lambda_min", "k_star", "reconstruction", "lead",
            "interventions", "compression"} <= drawn
    # absent data are skipped and listed on the page, not drawn
    assert "tangent" not in drawn and "decoupled" not in drawn
    assert any("P3" in t for t in res.missing) and "Not in this store" in page
    # results first: the runs table (grok steps), then the claims' verdicts, the figures; what is absent last,
    # one short line each, naming the command that would produce it
    heads = re.findall(r'<h2 id="([^"]+)">', page)
    assert heads[:3] == ["results", "claims", "accuracy"] and heads[-1] == "missing", heads
    assert page.index('id="results"') < page.index("<img") and page.rindex("<img") < page.index('id="missing"')
    assert "Skipped:" not in page
    lines = re.findall(r"<li><b>(.*?)</b>: (.*?)</li>", page.split('id="missing"', 1)[1])
    assert {t for t, _ in lines} == set(res.missing) and len(lines) >= 2
    for title, line in lines:
        assert len(re.sub(r"<[^>]+>", "", line)) <= 100, line
        assert "<code>grokscope " in line or "P3" not in title, line
    assert "<code>grokscope normmin mlp --out STORE</code>" in page
    # the lead law over the synthetic runs recovers their exponent; the claims table is escaped
    want = fit_power_law(GROKS, LEADS)
    got = re.search(r"over (\d+) \(run, task\) points: α = ([0-9.]+) ± ([0-9.]+), R² = ([0-9.]+)", page)
    assert got, "no power-law fit on the page"
    assert int(got.group(1)) == 3 and got.group(2) == f"{want.alpha:.3f}" and got.group(4) == f"{want.r2:.3f}"
    assert "&lt;check&gt;" in page and "<check>" not in page
    assert 'class="v-reproduced"' in page and 'class="v-partly"' in page
    # the runs table names every run, real and synthetic
    for name in ("synth-0", "synth-2") + tuple(p.name for p in store.iterdir() if p.name.startswith("add")):
        assert name in page


def test_report_loads_in_headless_browser(report, tmp_path):
    res, out = report, report.index.parent
    n_img = len(_img_sources(res.index.read_text()))
    probe = ("<script>var errs = 0; window.onerror = function () { errs += 1; };"
             "window.addEventListener('load', function () {"
             "var imgs = Array.from(document.images);"
             "var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;"
             "document.title = 'IMGS ' + ok + '/' + imgs.length + ' ERRS ' + errs; });</script>")
    check = out / "check.html"
    check.write_text(res.index.read_text().replace("</body>", probe + "</body>"))
    proc = headless_dom(check, tmp_path / "chromium-profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", proc.stdout)
    assert title, proc.stdout[:500]
    assert title.group(1) == f"IMGS {n_img}/{n_img} ERRS 0"
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console


def test_cli_report_json_and_errors(store, report, tmp_path, capsys):
    real = [RunDir(p) for p in sorted(store.iterdir()) if p.name.startswith("add")]
    stored = [r.analyses()["summary"] for r in real]  # `report` ran with compute_summary: it stored them
    assert all(0.9 < s["rho"] <= 1.0 and s["defect_final_step"] == 150 for s in stored)
    out = tmp_path / "cli"
    assert main(["report", str(store), "--out", str(out), "--json", "--null-runs", "0"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert Path(res["index"]) == out / "index.html" and Path(res["index"]).exists()
    assert all(Path(f).exists() for f in res["figures"])
    assert "Integrability ρ" not in res["missing"]  # drawn from the stored summaries, without --compute
    page = Path(res["index"]).read_text()
    assert all(f"{s['rho']:.4g}" in page for s in stored)  # the runs table shows the stored ρ
    assert main(["report", str(tmp_path / "nope")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "no grokscope runs" in capsys.readouterr().err


def test_plot_functions_are_pure_and_shaped():
    steps = np.arange(0, 500, 100)
    metrics = pd.DataFrame([{"run": r, "step": int(s), "task": t, "split": sp, "acc": 0.5} for r in ("a", "b")
                            for s in steps for t in ("add", "mul") for sp in ("train", "test")])
    fig = plots.accuracy_curves(metrics, {"a": {"add": 300, "mul": None}})
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    vlines = [ln for ln in fig.axes[0].lines if list(ln.get_xdata()) == [300, 300]]
    assert len(vlines) == 1 and not any(list(ln.get_xdata()) == [300, 300] for ln in fig.axes[1].lines)
    x = np.array([1e3, 2e3, 4e3, 8e3])
    leads = pd.DataFrame({"run": list("abcd"), "task": "add", "grok_step": x, "lead": 0.5 * x ** 1.2})
    fit = fit_power_law(leads["grok_step"], leads["lead"])
    fig = plots.lead_power_law(leads, fit)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    line = ax.lines[-1]
    assert np.allclose(line.get_ydata(), 0.5 * np.asarray(line.get_xdata()) ** 1.2, rtol=1e-6)
