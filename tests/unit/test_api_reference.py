"""The API reference can be built from: every public class is on an API page with its constructor (the site merges
`__init__` into the class: its signature and its documented arguments), every config field has a one-line
description the page renders (a comment where it is declared, turned into its docstring by docs/field_comments.py),
and a docstring that points at its module's doc finds that doc on the same page. The rendered pages themselves are
checked by tests/integration/test_docs_site.py."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import re

import pytest
import yaml

import grokscope as gs

from conftest import ROOT

API = ROOT / "docs" / "api"


def _field_comments():
    spec = importlib.util.spec_from_file_location("field_comments", ROOT / "docs" / "field_comments.py")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError:  # the extension imports griffe, which comes with the docs extra
        pytest.skip('the API reference test needs the docs extra: pip install -e ".[docs]"')
    return mod


def _resolve(path: str):
    try:
        return importlib.import_module(path)
    except ImportError:
        module, name = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)


def _directives() -> list[tuple[str, str, object, str]]:
    """(page, qualified name, object, the directive's options) of everything an API page renders: each `:::`
    target, and for a module with a `members` list each member."""
    out = []
    for page in sorted(API.glob("*.md")):
        for m in re.finditer(r"^::: ([\w.]+)\n((?:    .*\n)*)", page.read_text(), re.M):
            path, options = m.group(1), m.group(2)
            obj = _resolve(path)
            members = re.search(r"members: \[(.*?)\]", options, re.S)
            out.append((page.name, path, obj, options))
            if inspect.ismodule(obj) and members:
                for name in (n.strip() for n in members.group(1).split(",")):
                    out.append((page.name, f"{path}.{name}", getattr(obj, name), options))
    return out


DIRECTIVES = _directives()
CLASSES = [(page, path, obj) for page, path, obj, _ in DIRECTIVES if inspect.isclass(obj)]


def _config_classes() -> list[type]:
    """The configs the reference must describe field by field: every `*Config` dataclass on an API page and the
    grid, with the dataclass sections of each (RunConfig's data, model, optim, method)."""
    todo = [obj for _, _, obj in CLASSES if dataclasses.is_dataclass(obj)
            and (obj.__name__.endswith("Config") or obj is gs.config.Grid)]
    seen: list[type] = []
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.append(cls)
        for f in dataclasses.fields(cls):
            if inspect.isclass(f.default_factory) and dataclasses.is_dataclass(f.default_factory):
                todo.append(f.default_factory)
    return seen


def _options() -> dict:
    plugins = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["plugins"]
    mk = next(p["mkdocstrings"] for p in plugins if isinstance(p, dict) and "mkdocstrings" in p)
    return mk["handlers"]["python"]["options"]


def test_every_public_class_is_on_an_api_page():
    documented = {obj for _, _, obj in CLASSES}
    public = {getattr(gs, n) for n in gs.__all__ if inspect.isclass(getattr(gs, n))}
    assert public - documented == set(), "public classes with no API page"


def test_the_site_shows_each_class_constructor():
    """`merge_init_into_class` puts the `__init__` signature (formatted: ruff, separately) on the class; no page
    turns it off; each non-dataclass class documents every argument of its constructor."""
    opts = _options()
    assert opts.get("merge_init_into_class") is True and opts.get("separate_signature") is True
    assert opts.get("show_signature", True) is True
    for page, path, _, options in DIRECTIVES:
        assert not re.search(r"(merge_init_into_class|show_signature): false", options), (page, path)
    pytest.importorskip("ruff", reason="signatures are formatted by ruff (the docs extra)")
    for page, path, cls in CLASSES:
        init = cls.__dict__.get("__init__")
        if dataclasses.is_dataclass(cls) or init is None or issubclass(cls, Exception):
            continue  # a dataclass's constructor is its fields (below); an exception is raised, not built
        doc = inspect.getdoc(cls) or ""
        args = doc.split("Args:", 1)[1] if "Args:" in doc else ""
        for name, p in inspect.signature(init).parameters.items():
            if name == "self":
                continue
            shown = f"**{name}" if p.kind is p.VAR_KEYWORD else f"*{name}" if p.kind is p.VAR_POSITIONAL else name
            assert re.search(rf"^\s+{re.escape(shown)}:", args, re.M), f"{page}: {path}({name}=...) not described"


CONFIGS = _config_classes()


def test_the_configs_cover_run_and_monitor_and_detector():
    names = {c.__name__ for c in CONFIGS}
    assert {"RunConfig", "DataConfig", "ModelConfig", "OptimConfig", "MethodConfig", "MonitorConfig",
            "DetectorConfig", "ReportConfig", "Grid"} <= names


@pytest.mark.parametrize("cls", CONFIGS, ids=[c.__name__ for c in CONFIGS])
def test_every_config_field_has_a_description(cls):
    field_comment = _field_comments().field_comment
    lines = inspect.getsource(inspect.getmodule(cls)).splitlines()
    node = next(n for n in ast.walk(ast.parse("\n".join(lines)))
                if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    declared = {st.target.id: st.lineno for st in node.body
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
    assert set(declared) == {f.name for f in dataclasses.fields(cls)}
    bare = [name for name, line in declared.items() if not field_comment(lines, line)]
    assert bare == [], f"{cls.__name__}: fields with no description"


def test_field_comment_reads_the_line_then_the_block_above():
    field_comment = _field_comments().field_comment
    lines = ["class C:", "    a: int = 1  # the first", "    # about b,", "    # on two lines", "    b: str = '#x'",
             "", "    c: int = 3", "    d: str = '# not a comment'  # but this is"]
    assert [field_comment(lines, i) for i in (2, 5, 7, 8)] == ["the first", "about b, on two lines", None,
                                                                "but this is"]


def test_a_docstring_pointing_at_its_module_doc_finds_it_on_the_same_page():
    on_page = {(page, path) for page, path, obj, _ in DIRECTIVES if inspect.ismodule(obj)}
    for page, path, obj, _ in DIRECTIVES:
        if inspect.ismodule(obj):
            continue
        if re.search(r"module doc", inspect.getdoc(obj) or ""):
            assert (page, obj.__module__) in on_page, f"{page}: {path} refers to its module's doc, not on the page"


def test_a_comment_shows_as_written_once_rendered():
    as_markdown = _field_comments().as_markdown
    assert as_markdown("trajectory/<step>.safetensors, `*attn*` or *attn*, a & b") == (
        r"trajectory/&lt;step&gt;.safetensors, `*attn*` or \*attn\*, a &amp; b")
