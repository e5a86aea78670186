"""The environment `make` builds: installed packages come compiled to bytecode (Makefile
`uv sync --compile-bytecode`), so that a machine with PYTHONDONTWRITEBYTECODE set does not
compile Great Expectations and Airflow from source in every process it starts."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "module",
    ["great_expectations", "great_expectations.core.expectation_suite", "airflow.sdk", "duckdb"],
)
def test_installed_packages_are_compiled_to_bytecode(module: str) -> None:
    source = importlib.import_module(module).__file__
    assert source is not None
    if not source.endswith(".py"):
        pytest.skip(f"{module} is an extension module")
    assert Path(importlib.util.cache_from_source(source)).exists(), (
        f"{module} has no .pyc: the venv was not built with `uv sync --compile-bytecode`"
    )
