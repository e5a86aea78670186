"""Great Expectations is used through its public API: no code of ours assigns to an attribute
of a GX class or module (a class-wide patch would give stale verdicts after a GX upgrade, not
an error)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("pipelines", "dags", "tests", "benchmarks")


def _gx_names(tree: ast.AST) -> set[str]:
    """Names a module binds to GX modules, classes or functions."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "great_expectations":
                    names.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "great_expectations"
        ):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def gx_attribute_assignments(path: Path) -> list[str]:
    """`file:line` of every assignment to (or setattr/delattr on) an attribute of a GX name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    gx = _gx_names(tree)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and node.args
        ):
            if _root(node.args[0]) in gx:
                found.append(f"{where}:{node.lineno}")
            continue
        for t in targets:
            if isinstance(t, ast.Attribute) and _root(t) in gx:
                found.append(f"{where}:{node.lineno}")
    return found


def test_no_code_assigns_to_a_great_expectations_class_attribute() -> None:
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50
    found = [hit for p in files for hit in gx_attribute_assignments(p)]
    assert found == []


def test_the_check_finds_a_class_wide_patch(tmp_path: Path) -> None:
    """The check itself: the patches this project once made are found."""
    sample = tmp_path / "patch.py"
    sample.write_text(
        "from great_expectations.expectations.expectation import Expectation\n"
        "from great_expectations.execution_engine import pandas_execution_engine as pe\n"
        "Expectation.configuration = property(lambda self: None)\n"
        "pe.PandasExecutionEngine._apply_row_condition_filter = None\n"
        "setattr(Expectation, 'x', 1)\n"
        "ok = Expectation\n",
        encoding="utf-8",
    )
    assert gx_attribute_assignments(sample) == ["patch.py:3", "patch.py:4", "patch.py:5"]
