"""The static HTML report of a store: gather what the analyses left, draw it, write `index.html` + PNGs.

`build_report(store, out)` looks at every run below `store` and draws one figure per quantity the store
holds data for (`sections.SECTIONS`): accuracy curves with grok markers, PC1% of each attention matrix vs
the random-walk null, the commutator defect with its onset, integrability ρ, λ_min vs weight decay, k* vs
weight decay, the lead–t_grok power law, intervention scans, compression curves, P3's tangent cosine and
decoupled dynamics, and the claims table. The page leads with results (the runs table with grok steps, the
claims' verdicts, then the figures); a quantity with no data comes last, one line with the command that would
produce it. Figures are written first, then `index.html` atomically, so a reader never sees a
page whose images are missing. Gathering (`gather`) reads the store; rendering (`render`) writes the page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from grokscope.errors import StoreError
from grokscope.report.config import ReportConfig, ReportResult, Section
from grokscope.report.gather import StoreData
from grokscope.report.render import INDEX, render_html, save_figure, write_text
from grokscope.report.sections import SECTIONS

__all__ = ["ReportConfig", "ReportResult", "Section", "build_report"]


def build_report(store: str | os.PathLike, out: str | os.PathLike | None = None,
                 cfg: ReportConfig | None = None) -> ReportResult:
    """Draw every figure the store has data for into `out` (default STORE/report), then write index.html."""
    cfg = cfg or ReportConfig()
    store = Path(store)
    if not store.exists():
        raise StoreError(f"{store} does not exist")
    out = Path(out) if out is not None else store / "report"
    if out.exists() and not out.is_dir():
        raise StoreError(f"--out {out} exists and is not a folder")
    data = StoreData(store, out, cfg)
    if not data.runs and data.claims.empty and data.scans.empty and not data.p3_pngs and data.decoupled.empty:
        raise StoreError(f"no grokscope runs, claims or scans under {store}")
    out.mkdir(parents=True, exist_ok=True)

    sections: list[Section] = []
    figures: list[Path] = []
    for make in SECTIONS:
        panel = make(data)
        if panel is None:
            continue
        s = Section(panel.key, panel.title, caption=panel.caption, table=panel.table, missing=panel.missing)
        if panel.draw is not None and panel.missing is None:
            path = out / f"{panel.key}.png"
            save_figure(panel.draw(), path, cfg.dpi)
            figures.append(path)
            s.figure = path.name
        sections.append(s)
    for i, png in enumerate(data.p3_pngs):
        name = f"p3_{i}_{png.name}"
        shutil.copyfile(png, out / name)
        figures.append(out / name)
        sections.append(Section(f"p3_{i}", f"P3 figure {png.name}", figure=name,
                                caption=f"As written by `grokscope normmin` at {png.relative_to(store)}."))
    claims = data.claims
    sections.append(Section("claims", "Paper claims: measured vs claimed", table=claims if len(claims) else None,
                            caption="From claims_*.json in the store (`grokscope claims`).",
                            missing=None if len(claims) else
                            "no claims_*.json: `grokscope claims p1 --json > STORE/claims_p1.json`"))

    write_text(out / INDEX, render_html(store, sections, data.overview(), len(data.runs)))
    missing = {s.title: s.missing for s in sections if s.missing}
    return ReportResult(out / INDEX, figures, sections, missing)
