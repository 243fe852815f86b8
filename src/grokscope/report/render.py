"""Rendering: the sections as a static HTML page (escaped tables, figures by file name), written atomically."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from grokscope.formatting import fmt
from grokscope.report.config import Section
from grokscope.store import atomic_write, jsonable

__all__ = ["INDEX", "CSS", "save_figure", "write_text", "table_html", "render_html"]

INDEX = "index.html"


def save_figure(fig: Any, path: Path, dpi: int) -> None:
    """PNG via a temporary file renamed into place."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


def write_text(path: Path, text: str) -> None:
    """UTF-8 text via a temporary file renamed into place."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _fmt_cell(v: Any) -> str:
    """A table cell: numbers to 4 significant digits, '—' where missing, dicts and lists as JSON."""
    if isinstance(v, (dict, list)):
        return json.dumps(jsonable(v))
    return fmt(v, ".4g")


def table_html(df: pd.DataFrame, verdict_col: str | None = None) -> str:
    """A plain HTML table (escaped); a verdict column gets a CSS class per verdict."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            text = html.escape(_fmt_cell(row[c]))
            cls = ""
            if c == verdict_col:
                cls = f' class="v-{html.escape(str(row[c]).replace(" ", "-"))}"'
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.caption { font-size: 0.85em; color: #444; max-width: 70em; }
.missing { color: #8a5300; font-size: 0.9em; }
.v-reproduced { background: #d8f5d0; } .v-partly { background: #fff1c2; }
.v-not-reproduced { background: #f9d0d0; } .v-inconclusive, .v-not-run { background: #eee; }
"""


def _with_code(text: str) -> str:
    """Escape `text` for HTML and set its `backticked` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(store: Path, sections: list[Section], overview: pd.DataFrame, n_runs: int) -> str:
    """The page: results first (the runs table, the claims' verdicts, one block per drawn section), then one
    short line per quantity the store lacks, with the command that would produce it."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    present = [s for s in sections if not s.missing]
    absent = [s for s in sections if s.missing]
    present.sort(key=lambda s: s.key != "claims")  # the verdicts right after the runs table
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>grokscope report: {html.escape(store.name or str(store))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>grokscope report</h1><p>Store <code>{html.escape(str(store))}</code>: {n_runs} run(s); "
        f"generated {when}.</p>",
    ]
    if len(overview):
        parts += ['<h2 id="results">Results: runs and grok steps</h2>', table_html(overview)]
    for s in present:
        parts.append(f'<h2 id="{html.escape(s.key)}">{html.escape(s.title)}</h2>')
        if s.figure:
            parts.append(f'<img src="{html.escape(s.figure)}" alt="{html.escape(s.title)}">')
        if s.caption:
            parts.append(f'<p class="caption">{html.escape(s.caption)}</p>')
        if s.table is not None and len(s.table):
            parts.append(table_html(s.table, verdict_col="verdict" if "verdict" in s.table else None))
    if absent:
        parts.append('<h2 id="missing">Not in this store</h2><ul class="missing">')
        parts += [f"<li><b>{html.escape(s.title)}</b>: {_with_code(s.missing or '')}</li>" for s in absent]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
