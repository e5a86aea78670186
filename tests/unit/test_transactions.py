"""One way to run a transaction: `pipelines.warehouse.transaction`. Hand-written begin / commit /
rollback elsewhere drifted apart (a rollback that raised over the error it was cleaning up, a
commit skipped on an early return); detection's write was the last of them."""

from __future__ import annotations

import re
from pathlib import Path

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
HOME = PIPELINES / "warehouse" / "backend.py"
STATEMENT = re.compile(r"""execute\(\s*["'](begin|commit|rollback)\b""", re.IGNORECASE)


def test_only_the_warehouse_transaction_helper_begins_commits_or_rolls_back() -> None:
    found = [
        f"{path.relative_to(PIPELINES)}:{n}"
        for path in sorted(PIPELINES.rglob("*.py"))
        if path != HOME
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if STATEMENT.search(line)
    ]
    assert not found, f"use pipelines.warehouse.transaction instead: {found}"
    assert STATEMENT.search(HOME.read_text(encoding="utf-8"))  # the pattern finds the real ones
