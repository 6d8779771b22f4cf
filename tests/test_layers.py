"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml), no
import cycle between modules, no module over 800 lines, and a client that loads no
engine, store or server."""

from __future__ import annotations

import subprocess
import sys

import grimp

from tests.conftest import ROOT

MAX_LINES = 800


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept() -> None:
    result = _run(sys.executable, "-m", "importlinter.cli", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph("runyard", "runyard_bench", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y"]]


def test_no_module_over_800_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for folder in ("src", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_importing_the_client_loads_no_engine_store_or_server() -> None:
    code = (
        "import sys, runyard.client\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('runyard'))))"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "runyard.client" in loaded
    heavy = ("runyard.app", "runyard.service", "runyard.engine", "runyard.store", "runyard.server")
    assert [m for m in loaded if m.startswith(heavy)] == []
