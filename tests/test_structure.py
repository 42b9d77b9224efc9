"""Architecture checks: the engine imports no gRPC or Prometheus code, and no package imports in a circle.

The import graph is read from the source (AST), not by importing: every import at module
level counts, including those under ``if TYPE_CHECKING:`` (a circle through type hints is
still a circle for a reader and for refactoring); imports inside functions do not (they are
the explicit way to defer a dependency). Relative imports are resolved to module names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sim_engine", "server", "client_sdk")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements at module level, also inside module-level if/try blocks (TYPE_CHECKING included)."""
    out: list[ast.stmt] = []
    work: list[ast.stmt] = list(tree.body)
    while work:
        node = work.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            work.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                work.extend(handler.body)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports at module level."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_project_packages():
    graph = import_graph()
    assert "sim_engine.simulation" in graph and graph["sim_engine.simulation"]
    assert find_cycles(graph) == []


def test_sim_engine_imports_no_grpc_or_prometheus():
    code = ("import sys, sim_engine, sim_engine.simulation, sim_engine.spec, sim_engine.summary, "
            "sim_engine.output, sim_engine.memory\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'prometheus_client', 'server',"
            " 'client_sdk'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == ""


def test_engine_modules_import_nothing_above_them():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("sim_engine"):
            assert not {d for d in deps if d.split(".")[0] in ("server", "client_sdk")}, mod
        if mod.startswith("client_sdk"):
            assert not {d for d in deps if d.split(".")[0] in ("server", "sim_engine")}, mod


def test_the_spec_limits_table_names_every_limit():
    from sim_engine import datafiles, limits, safe_yaml

    table = (ROOT / "docs" / "SPEC_LIMITS.md").read_text()
    names = [n for n in dir(limits) if n.startswith("MAX_")] + ["MAX_SPEC_BYTES", "MAX_DEPTH", "MAX_NODES",
                                                                 "MAX_KEY_CHARS", "MAX_TRACE_BYTES"]
    missing = [n for n in names if f"`{n}`" not in table]
    assert not missing, missing
    assert safe_yaml.MAX_SPEC_BYTES == 1 << 20 and safe_yaml.MAX_NODES == 50_000 and safe_yaml.MAX_DEPTH == 32
    assert datafiles.MAX_TRACE_BYTES == 64 << 20 and limits.MAX_BLOCK_SIZE == 1024
