"""The floors of `pipelines/` run one way: a package imports only packages on lower floors, and
no module imports itself through others (every import counts, also those inside functions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipelines"

# Bottom to top. A package (or top-level module) may import what is on a lower floor only.
FLOORS: list[set[str]] = [
    {"errors"},
    {"registry", "settings"},
    {"config", "canonical", "issues"},
    {"warehouse"},
    {"validation"},
    {"ingest"},
    {"simulate"},
    {"detect"},
    {"answers"},
    {"deliver"},
    {"erasure", "jobs", "warmup"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """module -> the pipelines modules it imports (anywhere in its code)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
                # `from pkg import module` imports the module; `from module import name` the module
                targets = [t for t in targets if t in known] or [node.module]
            for t in targets:
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t.startswith("pipelines.") and t != name:
                    found.add(t)
        graph[name] = found
    return graph


def package_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def floor_of(package: str) -> int:
    for i, floor in enumerate(FLOORS):
        if package in floor:
            return i
    raise AssertionError(f"pipelines.{package} is on no floor: add it to FLOORS")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, targets in sorted(graph.items()):
        if a == "pipelines":
            continue
        for b in sorted(targets):
            pa, pb = package_of(a), package_of(b)
            if pa != pb and floor_of(pb) >= floor_of(pa):
                bad.append(f"{a} -> {b}")
    return bad


def test_every_package_is_on_a_floor() -> None:
    packages = {package_of(m) for m in modules() if m != "pipelines"}
    for p in packages:
        floor_of(p)


def test_no_package_imports_upward_or_sideways() -> None:
    assert upward_imports(import_graph()) == []


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_find_a_cycle_and_an_upward_import() -> None:
    graph = {
        "pipelines.registry": {"pipelines.cli.app"},
        "pipelines.cli.app": {"pipelines.registry"},
    }
    assert cycles(graph) == [["pipelines.cli.app", "pipelines.registry"]]
    assert upward_imports(graph) == ["pipelines.registry -> pipelines.cli.app"]


BACKEND_WORDS = re.compile(
    r"duckdb\.connect\(|ducklake|\bLakeBackend\b|\bEmbeddedBackend\b|\bis_lake\b", re.I
)


def test_only_the_warehouse_package_opens_duckdb_or_names_a_backend() -> None:
    """The backend is chosen once, in pipelines/warehouse/ (from pipelines/settings.py, which
    reads the configuration); nothing else opens DuckDB or knows which backend it has."""
    found = []
    for folder in (PACKAGE, ROOT / "dags"):
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("pipelines/warehouse/") or rel == "pipelines/settings.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if BACKEND_WORDS.search(line):
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []


def test_the_environment_is_read_in_settings_only() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "pipelines/settings.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(", line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []
