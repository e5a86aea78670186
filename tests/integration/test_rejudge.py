"""Nothing good stays lost: a file that loaded with rows held back is judged again when what it
was judged under changes (the clinic config, the guard's version, the suites), the rows that
pass now load once, the rows loaded before are not loaded twice, a later delivery's values are
not overwritten, and the data team's receipt says so."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from conftest import REFERENCE_HEADER, reference_row

from pipelines.ingest import guard as deid
from pipelines.ingest.run import ingest_all

CASE = re.compile(r"^K-\d{4}-\d{5}$")


def srs(client: str, session: int, score: float = 9.0) -> str:
    return reference_row(client, "T100A", f"2025-03-{session:02d}", session, "SRS", [score] * 4)


def query(wh: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(wh), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _clinic(root: Path, extra: str = "") -> tuple[Path, Path]:
    config = root / "config"
    (config / "clinics").mkdir(parents=True, exist_ok=True)
    (config / "clinics" / "ref_clinic.yaml").write_text(
        f"clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n{extra}",
        encoding="utf-8",
    )
    (root / "landing" / "ref_clinic").mkdir(parents=True, exist_ok=True)
    return config, root / "landing"


def _write(landing: Path, name: str, rows: list[str]) -> None:
    (landing / "ref_clinic" / name).write_text(
        "\n".join([REFERENCE_HEADER, *rows]) + "\n", encoding="utf-8"
    )


@pytest.fixture
def old_guard(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The guard as it was (version 1): case numbers in client_id read as phone numbers."""
    real = deid.scan_values

    def scan_values(table: pa.Table, cfg):  # type: ignore[no-untyped-def]
        issues, mask = real(table, cfg)
        if "client_id" not in table.column_names:
            return issues, mask
        codes = table.column("client_id").to_pylist()
        rows = [i for i, c in enumerate(codes) if c and CASE.match(c)]
        reason = "identifier_in_field: phone-number-like value in client_id"
        issues = pd.concat([issues, pd.DataFrame({"row": rows, "reason": reason})])
        mask = pd.concat([mask, pd.DataFrame({"row": rows, "column": "client_id"})])
        return issues.reset_index(drop=True), mask.reset_index(drop=True)

    monkeypatch.setattr(deid, "scan_values", scan_values)
    monkeypatch.setattr("pipelines.ingest.discovery.GUARD_VERSION", "1")
    return monkeypatch


def test_rows_the_old_guard_held_back_load_once_after_the_upgrade(
    tmp_path: Path, old_guard: pytest.MonkeyPatch
) -> None:
    config, landing = _clinic(tmp_path)
    wh = tmp_path / "wh.duckdb"
    rows = [srs("C0001", 1), srs("C0001", 2)]
    rows += [srs(f"K-2025-{n:05d}", s) for n in (58225, 58226) for s in (1, 2)]
    rows += [srs("C0001", 2)]  # an exact copy: a duplicate, before and after
    rows += ["Jane Doe,T100A,2025-03-01,1,SRS,9,9,9,9,,,,,,,,,"]  # a name: held back for good
    _write(landing, "measures_2025.csv", rows)
    (first,) = ingest_all(config, landing, wh)
    assert (first.status, first.rows_loaded, first.rows_quarantined, first.rows_duplicate) == (
        "loaded_with_quarantine",
        2,
        5,
        1,
    )
    old_guard.undo()  # the upgrade

    (again,) = ingest_all(config, landing, wh)
    assert again.rejudged and again.rows_released == 4
    assert (again.status, again.rows_in, again.rows_loaded) == ("loaded_with_quarantine", 8, 6)
    assert (again.rows_quarantined, again.rows_duplicate) == (1, 1)
    assert sorted(again.clients_touched) == ["K-2025-58225", "K-2025-58226"]
    assert query(
        wh, "select count(*), count(distinct (client_id, session_number)) from measurements"
    ) == [(6, 6)]
    assert query(wh, "select count(*) from measurements_superseded") == [(0,)]
    ledger = query(
        wh,
        "select status, rows_in, rows_loaded, rows_quarantined, rows_duplicate from ingest_files",
    )
    assert ledger == [("loaded_with_quarantine", 8, 6, 1, 1)]
    (reasons,) = query(wh, "select reasons from quarantined_rows")
    assert reasons[0] == ["identifier_in_field: person-name-like value in client_id"]
    # the loads that touched the released clients are there for detection
    assert query(wh, "select rows_loaded from loads order by load_id") == [(2,), (4,)]

    # a second run loads nothing
    assert ingest_all(config, landing, wh) == []
    assert query(wh, "select count(*) from measurements") == [(6,)]


def test_a_file_the_old_guard_held_back_entirely_loads_after_the_upgrade(
    tmp_path: Path, old_guard: pytest.MonkeyPatch
) -> None:
    """The issue's clinic with case-number codes: every row held back, the file rejected
    (no_valid_rows); after the upgrade one run loads it all, the next loads nothing."""
    config, landing = _clinic(tmp_path)
    wh = tmp_path / "wh.duckdb"
    _write(landing, "measures_2025.csv", [srs(f"K-2025-{n:05d}", 1) for n in range(50)])
    (first,) = ingest_all(config, landing, wh)
    assert (first.status, first.rows_quarantined) == ("rejected", 50)
    old_guard.undo()
    (again,) = ingest_all(config, landing, wh)
    assert (again.status, again.rows_loaded, again.rows_quarantined) == ("loaded", 50, 0)
    assert query(wh, "select count(*) from quarantined_rows") == [(0,)]
    assert ingest_all(config, landing, wh) == []
    assert query(wh, "select count(*) from measurements") == [(50,)]


def test_a_corrected_config_releases_rows_and_the_receipt_says_so(tmp_path: Path) -> None:
    from pipelines.deliver.notify import receipt_message

    config, landing = _clinic(tmp_path)
    wh = tmp_path / "wh.duckdb"
    _write(
        landing, "measures_1.csv", [srs("T1", 1), srs("13.2018.71514", 1), srs("13.2018.71514", 2)]
    )
    (first,) = ingest_all(config, landing, wh)
    assert (first.rows_loaded, first.rows_quarantined) == (1, 2)  # invalid_code
    # a later delivery sets one of the held-back keys: it is not overwritten by the older file
    _write(landing, "measures_2.csv", [srs("T1", 2)])
    ingest_all(config, landing, wh)
    with duckdb.connect(str(wh)) as conn:  # as if the later file had carried the dotted code
        conn.execute(
            "update measurements set client_id = '13.2018.71514', total = 4 "
            "where client_id = 'T1' and session_number = 2"
        )

    _clinic(tmp_path, "client_code_pattern: '^(T\\d+|\\d{2}\\.\\d{4}\\.\\d{5})$'\n")
    (again,) = ingest_all(config, landing, wh)
    assert (again.file_name, again.rows_released, again.rows_loaded) == ("measures_1.csv", 1, 2)
    assert (again.status, again.rows_quarantined, again.rows_duplicate) == ("loaded", 0, 1)
    assert query(
        wh,
        "select session_number, total from measurements where client_id = '13.2018.71514' order by 1",
    ) == [(1, 36.0), (2, 4.0)]
    receipt = receipt_message("ref_clinic", "run", [vars(again)], "aw@example.org", ["t@x.org"])
    text = receipt.get_content()
    assert "judged again" in text and "1 row held back before now loaded" in text
    assert ingest_all(config, landing, wh) == []


def test_a_config_change_that_releases_nothing_is_not_reported(tmp_path: Path) -> None:
    config, landing = _clinic(tmp_path)
    wh = tmp_path / "wh.duckdb"
    _write(
        landing,
        "measures_1.csv",
        [srs("C1", 1), "Jane Doe,T100A,2025-03-01,1,SRS,9,9,9,9,,,,,,,,,"],
    )
    ingest_all(config, landing, wh)
    _clinic(tmp_path, "cadence_days: 14\n")
    assert ingest_all(config, landing, wh) == []
    assert query(wh, "select rows_loaded, rows_quarantined from ingest_files") == [(1, 1)]
    assert ingest_all(config, landing, wh) == []
