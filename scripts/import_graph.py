"""The studio's import graph: every `import` of a studio module, at module level or inside a
function, as an edge between packages or modules; prints the cycles (strongly connected
components) and exits 1 when there is one.

    python scripts/import_graph.py            # module level: studio.engine -> studio.weights ...
    python scripts/import_graph.py --packages # one node per subpackage (studio.quant, studio.ui ...)
    python scripts/import_graph.py --edges    # print every edge too
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Studio modules a file imports anywhere in it (function-level imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import sub` imports the submodule; `from pkg import name`, the package
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            names = subs + ([base] if len(subs) < len(node.names) else [])
        for n in names:
            # the longest studio module the name refers to
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n and n != here:
                found.add(n)
    return found


def node_of(module: str, packages: bool) -> str:
    if not packages:
        return module
    parts = module.split(".")
    return ".".join(parts[:2])


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", action="store_true", help="one node per subpackage")
    ap.add_argument("--edges", action="store_true", help="print every edge")
    a = ap.parse_args(argv)
    files = sorted((ROOT / "studio").rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for p in files:
        src = node_of(module_name(p), a.packages)
        for dst in imports_of(p, modules):
            d = node_of(dst, a.packages)
            if d != src and not (a.packages and d == "studio"):
                graph.setdefault(src, set()).add(d)
    if a.edges:
        for src in sorted(graph):
            print(f"{src} -> {', '.join(sorted(graph[src]))}")
    cycles = strongly_connected(graph)
    n_edges = sum(len(v) for v in graph.values())
    kind = "packages" if a.packages else "modules"
    if not cycles:
        print(f"no import cycles among {len(graph)} {kind} ({n_edges} edges, function-level imports included)")
        return 0
    for c in cycles:
        print("cycle: " + " <-> ".join(c))
    print(f"{len(cycles)} import cycles among {len(graph)} {kind}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
