"""The layout draws the flow (docs/architecture.md): the package root holds only its face and shared vocabulary,
every folder imports only folders of lower layers, no modules import each other in a loop, and files and
functions stay small."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "grokscope"
ROOT_MODULES = {"__init__", "__main__", "cli", "errors", "formatting"}
# Layers, lowest first: a unit (a root module or a folder) imports only units of lower layers.
LAYERS = [("errors", "formatting"), ("data", "runtime"), ("config",), ("store",), ("training",), ("geometry",),
          ("analyses", "monitor", "experiments"), ("sweep", "report", "integrations"), ("claims",), ("commands",),
          ("cli",), ("__main__", "__init__")]
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The grokscope modules `path` imports (`from pkg import sub` names the submodule, not the package)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for n in ast.walk(block)}  # imports for annotations only: no dependency at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("grokscope")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grokscope"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            out |= subs if len(subs) == len(node.names) else subs | {node.module}
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _unit(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_the_root_holds_only_the_face_and_the_shared_vocabulary():
    assert {p.stem for p in PACKAGE.glob("*.py")} == ROOT_MODULES
    units = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | ROOT_MODULES
    assert units == {u for layer in LAYERS for u in layer}


def test_every_import_runs_down_the_layers():
    layer = {u: i for i, names in enumerate(LAYERS) for u in names}
    modules = _modules()
    upward = [f"{m} -> {t}" for m, p in modules.items() for t in _imports(p, modules)
              if _unit(m) != _unit(t) and layer[_unit(t)] >= layer[_unit(m)]]
    assert upward == []


def test_no_modules_import_each_other_in_a_loop():
    modules = _modules()
    graph = {m: {t for t in _imports(p, modules) if t in modules} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in graph[m]:
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            comp = []
            while True:
                t = stack.pop()
                comp.append(t)
                if t == m:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert loops == []


def test_files_and_functions_stay_small():
    big, long = [], []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            big.append(rel)
        long += [f"{rel}:{n.name}" for n in ast.walk(ast.parse(text))
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert big == [] and long == []
