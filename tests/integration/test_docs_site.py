"""The documentation site: `mkdocs build --strict` passes, and the built home page and an API page render in
headless Chromium with their title, navigation, a figure and cross-reference links that resolve."""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grokscope.config import RunConfig
from grokscope.monitor import MonitorConfig

from conftest import ROOT, headless_dom

_SPEC = importlib.util.spec_from_file_location("field_comments", ROOT / "docs" / "field_comments.py")
FIELD_COMMENTS = importlib.util.module_from_spec(_SPEC)

pytestmark = pytest.mark.slow  # a strict build of the whole site, then a browser

# what the page shows once loaded, written into the DOM so that --dump-dom carries it out
PROBE = ("<script>var errs = []; window.addEventListener('error', function (e) { errs.push(String(e.message)); });"
         "window.addEventListener('load', function () {"
         "var imgs = Array.from(document.querySelectorAll('article img'));"
         "var out = {title: document.title,"
         " nav: Array.from(document.querySelectorAll('nav.md-nav--primary a.md-nav__link'))"
         ".map(function (a) { return a.textContent.trim(); }),"
         " imgs: imgs.length,"
         " decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,"
         " errors: errs};"
         "var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);"
         "document.body.appendChild(pre); });</script>")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from this checkout with --strict (warnings, broken links and anchors fail the build)."""
    pytest.importorskip("mkdocs", reason='the site test needs the docs extra: pip install -e ".[docs]"')
    pytest.importorskip("mkdocstrings", reason='the site test needs the docs extra: pip install -e ".[docs]"')
    _SPEC.loader.exec_module(FIELD_COMMENTS)
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _render(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """Load `page` (with the probe added) in headless Chromium: the probe's findings and the rendered DOM."""
    check = page.with_name("check.html")
    check.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    proc = headless_dom(check, tmp_path / "chromium-profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[:1000]
    return json.loads(html.unescape(found.group(1))), proc.stdout


def _resolves(site: Path, page: Path, href: str) -> bool:
    """Does a relative link of `page` point at a built file holding the anchor it names?"""
    path, _, anchor = href.partition("#")
    target = (page.parent / path).resolve() if path else page
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file() or site.resolve() not in target.resolve().parents:
        return False
    return not anchor or f'id="{anchor}"' in target.read_text()


def _crossrefs(dom: str) -> list[str]:
    """The hrefs of links into the API reference (autorefs to a documented object)."""
    return re.findall(r'<a [^>]*href="([^"]*#grokscope\.[^"]*)"', dom)


def test_home_page_renders(site, tmp_path):
    page = site / "index.html"
    probe, dom = _render(page, tmp_path)
    assert probe["title"] == "grokscope"
    assert {"Home", "Getting started", "Determinism", "Overview", "Monitor"} <= set(probe["nav"])
    assert probe["imgs"] >= 1 and probe["decoded"] == probe["imgs"], probe  # the quickstart figure decodes
    assert probe["errors"] == [], probe["errors"]
    refs = [h for h in _crossrefs(dom) if "api/" in h]
    assert any("grokscope.monitor.monitor.Monitor" in h for h in refs), refs
    assert refs and all(_resolves(site, page, h) for h in refs), refs


def test_api_page_renders(site, tmp_path):
    page = site / "api" / "monitor" / "index.html"
    probe, dom = _render(page, tmp_path)
    assert probe["title"].startswith("Monitor") and "grokscope" in probe["title"]
    assert "Home" in probe["nav"] and "Claims" in probe["nav"]
    assert probe["errors"] == [], probe["errors"]
    assert 'id="grokscope.monitor.monitor.Monitor"' in dom and "def step" not in dom  # rendered, not source
    assert re.search(r'id="grokscope\.monitor\.monitor\.Monitor\.step"', dom)
    refs = _crossrefs(dom)
    assert any("grokscope.monitor.settings.MonitorConfig" in h for h in refs), refs
    assert all(_resolves(site, page, h) for h in refs), [h for h in refs if not _resolves(site, page, h)]
    # the guide link leaves the API reference and lands on a built page
    assert _resolves(site, page, "../../monitor/")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_api_pages_show_constructors_and_every_config_field(site, tmp_path):
    """What a reader builds from: Monitor's constructor (formatted, one argument a line, each described) under
    its module's doc, and every field of RunConfig and MonitorConfig with its default and its description."""
    _, dom = _render(site / "api" / "monitor" / "index.html", tmp_path)
    assert dom.index('id="grokscope.monitor.monitor"') < dom.index('id="grokscope.monitor.monitor.Monitor"')
    assert "writes the trainer's run-store format" in _text(dom)  # the module doc the class points at
    sig = re.search(r'id="grokscope\.monitor\.monitor\.Monitor".*?<div class="doc-signature.*?</code>', dom, re.S)
    assert sig, "no separate signature for Monitor"
    text = _text(sig.group(0))
    assert re.search(r"Monitor\(\s*model: .*?,\s*\n\s*loss_fn: LossFn,\s*\n\s*batches: Any,\s*\n\s*out: ", text), text
    assert "on_divergence" in text and "**settings: Any" in text
    body = _text(dom.split('id="grokscope.monitor.monitor.Monitor"', 1)[1].split('id="grokscope.monitor.monitor.'
                                                                                 'Monitor.', 1)[0])
    assert "loss_fn" in body and "the training loss" in body  # the argument table
    for cls, where, page in ((RunConfig, "grokscope.config.RunConfig", "train"),
                             (MonitorConfig, "grokscope.monitor.settings.MonitorConfig", "monitor")):
        dom = (site / "api" / page / "index.html").read_text()
        lines = inspect.getsource(inspect.getmodule(cls)).splitlines()
        for f in dataclasses.fields(cls):
            anchor = f'id="{where}.{f.name}"'
            assert anchor in dom, (cls.__name__, f.name)
            block = " ".join(_text(re.split(r"<h\d id=", dom.split(anchor, 1)[1], maxsplit=1)[0]).split())
            assert re.search(rf"\b{f.name}: .+ = ", block), block[:300]  # name, type and default
            said = " ".join(FIELD_COMMENTS.field_comment(lines, _lineno(lines, f.name)).replace("`", "").split())
            assert said in block, (f.name, said, block[:400])  # its description


def _lineno(lines: list[str], name: str) -> int:
    return next(i for i, line in enumerate(lines, 1) if re.match(rf"\s+{name}: ", line))
