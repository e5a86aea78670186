"""On a DuckLake warehouse every writer supplies, with the row, the values the embedded file
computes (`now()`, `current_timestamp`): the lake's `not null` on them holds through two loads
(one supersedes a measurement), an answers load, a digest run and an erasure.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres; `make services`) and the
`production` extra (duckdb-ext-ducklake, duckdb-ext-postgres); skips with the reason otherwise.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines.answers import inbox as answers_inbox
from pipelines.answers.load import load_into
from pipelines.answers.tokens import Answer
from pipelines.deliver.digest import run_weekly_digest
from pipelines.erasure import forget
from pipelines.ingest.run import ingest_all
from pipelines.warehouse import lake as ducklake
from pipelines.warehouse import open_warehouse
from pipelines.warehouse.lake_ddl import STAMPED_AFTER_INSERT
from tests.e2e import test_ducklake
from tests.e2e.test_exactly_once import srs
from tests.integration.test_answers import claim
from tests.integration.test_warehouse import computed_not_null_columns

pytestmark = [pytest.mark.production]

lake = test_ducklake.lake  # a throwaway lake, dropped afterwards

EPISODE = "ref_clinic:C1:SRS:2"


def test_every_lake_writer_supplies_the_values_the_embedded_file_computes(
    lake: tuple[str, Path],
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog, data = lake
    monkeypatch.setenv(ducklake.BACKEND_ENV, "ducklake")
    monkeypatch.setenv(ducklake.CATALOG_ENV, catalog)
    monkeypatch.setenv(ducklake.DATA_ENV, str(data))
    wh = tmp_path / "unused.duckdb"  # the settings choose the lake
    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C1", 2, 8.0), srs("C2", 1, 7.0)])
    write_reference("measures_2.csv", [srs("C1", 2, 6.5)])  # supersedes a measurement
    results = ingest_all(reference_config_dir, tmp_path / "landing", wh)
    assert [r.status for r in results] == ["loaded", "loaded"]
    answers = tmp_path / "answers"
    with open_warehouse(wh) as conn:
        conn.execute(
            "insert into alert_episodes (alert_episode_id, clinic_id, client_id, clinician_id, "
            "instrument, opened_session, opened_date, last_flag_session, max_severity, status, "
            "episode_id) values (?, 'ref_clinic', 'C1', 'T01', 'SRS', 2, date '2026-03-02', "
            "2, 'high', 'ongoing', '')",
            [EPISODE],
        )
        answers_inbox.append(answers, claim(Answer.TALKED, episode=EPISODE))
        answers_inbox.append(answers, claim(Answer.NOT_YET, episode=EPISODE, clinician="T02"))
        loaded = load_into(conn, answers_inbox.pending(answers))
        assert (loaded["loaded"], loaded["refused"]) == (1, 1)
    run_weekly_digest(wh, reference_config_dir, dt.date(2026, 3, 9), tmp_path / "out")
    forget(wh, "ref_clinic", "C2")

    checked = sorted(computed_not_null_columns() - STAMPED_AFTER_INSERT)
    with ducklake.open_warehouse(catalog, data, read_only=True) as conn:
        found = []
        for table, column in checked:
            (nullable,) = conn.execute(
                "select is_nullable from duckdb_columns() "
                "where database_name = 'wh' and table_name = ? and column_name = ?",
                [table, column],
            ).fetchall()[0]
            rows, missing = conn.execute(
                f"select count(*), count(*) - count({column}) from {table}"  # noqa: S608
            ).fetchall()[0]
            found.append((table, column, nullable, rows > 0, missing))
    assert found == [(t, c, False, True, 0) for t, c in checked]
