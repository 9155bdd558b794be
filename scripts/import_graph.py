"""The import graph of the project's packages: modules, import circles, the longest chain, sizes.

    .venv/bin/python scripts/import_graph.py [ROOT] [PACKAGE ...] [--type-checking]

Reads the source (AST), so nothing is imported. An edge is any import of a module of the
packages, at module level or inside a function; imports under `if TYPE_CHECKING:` never run and
are left out unless --type-checking. Circles are the strongly connected components of more than
one module; the longest chain is counted in the graph of those components.
"""

from __future__ import annotations

import ast
import statistics
import sys
from functools import cache
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(path: Path, *, type_checking: bool) -> set[str]:
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not type_checking:
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not child.level and child.module:
                names.add(child.module)
                names.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def main(argv: list[str]) -> int:
    type_checking = "--type-checking" in argv
    args = [a for a in argv if not a.startswith("--")]
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    packages = args[1:] or ["runtime", "bot"]
    files = [
        p for pkg in packages for p in (root / pkg).rglob("*.py") if "migrations" not in p.parts
    ]
    modules = {module_name(root, p): p for p in files}

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {
        m: {d for n in imported(p, type_checking=type_checking) if (d := known(n)) and d != m}
        for m, p in modules.items()
    }
    components = _components(edges)
    index = {m: i for i, c in enumerate(components) for m in c}
    graph = {i: {index[w] for v in c for w in edges[v]} - {i} for i, c in enumerate(components)}

    @cache
    def depth(i: int) -> int:
        return 1 + max((depth(j) for j in graph[i]), default=0)

    chain = [max(graph, key=depth)]
    while graph[chain[-1]]:
        chain.append(max(graph[chain[-1]], key=depth))
    circles = [sorted(c) for c in components if len(c) > 1]
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules.items()}
    print(f"modules {len(modules)}; circles {len(circles)}")
    for circle in circles:
        print("  circle:", " <-> ".join(circle))
    print(f"longest chain {len(chain)}: " + " -> ".join(sorted(components[i])[0] for i in chain))
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    print(
        f"lines: median {statistics.median(sizes.values()):.0f}, total {sum(sizes.values())}; "
        "largest " + ", ".join(f"{m} {n}" for m, n in largest)
    )
    return 0


def _components(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
