"""No import circles in ``src/multipose``: a static check of module-level imports, and every module imports
cleanly in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "multipose").rglob("*.py"))}


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``multipose`` imported when ``name`` is executed (imports inside functions and under
    ``if TYPE_CHECKING`` do not run at import time)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + sum((h.body for h in getattr(node, "handlers", [])), []))
                visit(getattr(node, "finalbody", []))
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("multipose"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("multipose"):
                    continue
                submodules = {f"{target}.{a.name}" for a in node.names} & known
                out.update(submodules)
                if len(submodules) < len(node.names):  # names defined in the module / package itself
                    out.add(target)

    visit(ast.parse(path.read_text()).body)
    return {m for m in out if m in known and m != name}


def test_no_import_cycles_in_src():
    modules = _modules()
    graph = {n: _top_level_imports(n, p, set(modules)) for n, p in modules.items()}
    cycles = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m) :] + [m])
            elif m not in state:
                dfs(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n)
    assert not cycles, "import cycles (module-level imports): " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.slow  # two interpreters import torch, lightning, timm, ... (~1 min on 2 busy cores)
def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in _modules() if not n.endswith("__main__"))
    for order in (names, names[::-1]):
        code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
        proc = subprocess.run(
            [sys.executable, "-c", code, *order],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
