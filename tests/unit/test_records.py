"""A staged file crosses XCom whole: the Airflow path loads exactly what the CLI path does."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.warehouse import FileResult, StagedFile


def test_a_staged_file_survives_xcom_with_its_key_check_and_clients(tmp_path: Path) -> None:
    staged = StagedFile(
        result=FileResult("c1", "m.csv", "ab" * 32, "measures", "loaded", rows_in=3),
        valid_path=tmp_path / "valid",
        quarantine_path=None,
        keys_unique=True,
        clients=["C1", "C2"],
    )
    item = json.loads(json.dumps(staged.to_item()))  # what XCom keeps
    assert StagedFile.from_item(item) == staged


def test_an_item_without_the_key_check_leaves_it_to_the_loader() -> None:
    item = {"result": FileResult("c1", "m.csv", "x", "measures", "loaded").__dict__}
    rebuilt = StagedFile.from_item({**item, "valid_path": None, "quarantine_path": None})
    assert rebuilt.keys_unique is False and rebuilt.clients is None
