"""The weekly digest's delivery ledger and `alliance-watch forget` on a DuckLake warehouse
(catalog in the local PostgreSQL, Parquet data in tmp_path): a digest run twice sends once (a
refused send is recorded and retried), and an erasure leaves the client in no relation, no
Parquet file under the data path and no value of the catalog database, with the audit row
holding no code.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres; `make services`) and the
`production` extra (duckdb-ext-ducklake, duckdb-ext-postgres); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from pipelines import cli
from pipelines.deliver.digest import run_weekly_digest
from pipelines.deliver.mailer import SmtpSettings
from pipelines.detect.ruptures import detect
from pipelines.ingest.run import ingest_all
from pipelines.warehouse import lake as ducklake
from tests.conftest import Mailbox
from tests.e2e.test_ducklake import lake  # noqa: F401 - the fixture
from tests.integration.test_digest import AS_OF, make_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.production]

ROOT = Path(__file__).resolve().parents[2]
LAKE_ENV = (ducklake.BACKEND_ENV, ducklake.CATALOG_ENV, ducklake.DATA_ENV)


def select_lake(monkeypatch: pytest.MonkeyPatch, catalog: str, data: Path) -> None:
    monkeypatch.setenv(ducklake.BACKEND_ENV, "ducklake")
    monkeypatch.setenv(ducklake.CATALOG_ENV, catalog)
    monkeypatch.setenv(ducklake.DATA_ENV, str(data))


# ------------------------------------------------------------------------------------- digest


def _copy_into_lake(embedded: Path, catalog: str, data: Path) -> None:
    """Every row of the embedded warehouse's tables, into the lake's relations of that name."""
    with ducklake.open_warehouse(catalog, data) as conn:
        conn.execute(f"attach '{embedded}' as emb (read_only)")
        tables = conn.execute(
            "select table_name from information_schema.tables where table_catalog = 'emb' "
            "and table_type = 'BASE TABLE' and table_name not in "
            "('schema_migrations', 'instruments')"
        ).fetchall()
        for (t,) in tables:
            conn.execute(f"insert into wh.main.{t} by name select * from emb.main.{t}")  # noqa: S608


def _lake_ledger(catalog: str, data: Path) -> list[tuple[object, ...]]:
    with ducklake.open_warehouse(catalog, data, read_only=True) as conn:
        return conn.execute(
            "select clinician_id, kind, status, attempts, error from digest_deliveries "
            "order by clinician_id, kind"
        ).fetchall()


def test_digest_on_ducklake_sends_once_and_retries_a_refused_send(
    lake: tuple[str, Path],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: tuple[Mailbox, SmtpSettings],  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog, data = lake
    fx = make_warehouse(tmp_path / "emb")  # the digest tests' clinic, copied into the lake
    _copy_into_lake(fx.warehouse, catalog, data)
    select_lake(monkeypatch, catalog, data)
    unused = tmp_path / "not-used.duckdb"
    recorder, settings = smtp_server
    once = SmtpSettings(**{**settings.__dict__, "attempts": 1})
    recorder.fail = 1  # the first message is refused (451) and, with one attempt, fails

    first = run_weekly_digest(unused, fx.config_dir, AS_OF, fx.out, once)
    assert (first.sent, first.failed, first.written) == (2, 1, 1)
    ledger = _lake_ledger(catalog, data)
    failed = [r for r in ledger if r[2] == "failed"]
    assert len(failed) == 1 and failed[0][3:] == (1, "SMTPDataError 451")

    second = run_weekly_digest(unused, fx.config_dir, AS_OF, fx.out, once)
    assert (second.sent, second.already_sent, second.failed) == (1, 2, 0)
    # the third run through the command line, whose --warehouse file does not exist (unused)
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_HOST", settings.host)
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_PORT", str(settings.port))
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_FROM", settings.sender)
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_STARTTLS", "true" if settings.starttls else "false")
    argv = ["digest", "--warehouse", str(unused), "--config-dir", str(fx.config_dir)]
    assert cli.main([*argv, "--date", AS_OF.isoformat(), "--out", str(fx.out)]) == 0
    assert "0 sent" in capsys.readouterr().out

    assert len(recorder.messages) == 3, "each digest reached the server exactly once"
    assert not unused.exists(), "the DuckLake backend must not create the embedded file"
    ledger = _lake_ledger(catalog, data)
    keys = [(r[0], r[1]) for r in ledger]
    assert len(keys) == len(set(keys)) == 4, "one ledger row per digest, replaced not added"
    assert sorted(r[3] for r in ledger if r[2] == "sent") == [1, 1, 2]
    assert {r[2] for r in ledger} == {"sent", "written"}  # T03 has no address: written only


# ------------------------------------------------------------------------------------- forget


def _values_mentioning(conn: duckdb.DuckDBPyConnection, code: str) -> list[tuple[str, str]]:
    """(relation, column) of every cell of every lake table whose text contains `code`."""
    hits = []
    tables = conn.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = 'wh' and table_type = 'BASE TABLE'"
    ).fetchall()
    for (t,) in tables:
        for (c,) in conn.execute(f"select column_name from (describe wh.main.{t})").fetchall():  # noqa: S608
            n = conn.execute(
                f'select count(*) from wh.main.{t} where contains(cast("{c}" as varchar), ?)',  # noqa: S608
                [code],
            ).fetchall()[0][0]
            if n:
                hits.append((t, c))
    return hits


def _history_rows(code: str) -> int:
    with ducklake.open_warehouse(read_only=True) as conn:
        return int(
            conn.execute(
                "select count(*) from measurements_history where client_id = ?", [code]
            ).fetchall()[0][0]
        )


def _parquet_files_holding(data: Path, code: str) -> list[str]:
    """Every Parquet file under the data path whose rows hold `code` in any value, or whose
    bytes (statistics, dictionaries) do."""
    scan = duckdb.connect()
    try:
        hits = []
        for f in sorted(data.rglob("*.parquet")):
            n = scan.execute(
                "select count(*) from read_parquet(?) as r where contains(r::varchar, ?)",
                [str(f), code],
            ).fetchall()[0][0]
            if n or code.encode() in f.read_bytes():
                hits.append(str(f.relative_to(data)))
        return hits
    finally:
        scan.close()


def _catalog_values_mentioning(catalog: str, code: str) -> list[str]:
    """Tables of the catalog database (DuckLake's metadata, inlined data, statistics) with a
    value containing `code`."""
    import psycopg

    hits = []
    with psycopg.connect(catalog) as pg:
        tables = pg.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            n = pg.execute(
                f'select count(*) from "{schema}"."{table}" as t '  # noqa: S608
                "where strpos(t::text, %s) > 0",
                [code],
            ).fetchone()
            if n and n[0]:
                hits.append(f"{schema}.{table}")
    return hits


def test_forget_on_ducklake_leaves_no_row_file_or_catalog_value(
    lake: tuple[str, Path],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog, data = lake
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "generate",
            "--out",
            str(tmp_path),
            "--seed",
            "3",
        ]
        + ["--clinics", "1", "--clients", "40", "--period", "all", "--as-of", "2026-06-01"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    select_lake(monkeypatch, catalog, data)
    unused = tmp_path / "not-used.duckdb"
    ingest_all(tmp_path / "config", tmp_path / "landing", unused)
    with ducklake.open_warehouse() as conn:
        detect(conn)
        clinic, client = conn.execute(
            "select clinic_id, client_id from flags group by all order by count(*) desc, 2 limit 1"
        ).fetchone()  # type: ignore[misc]
    # a later delivery whose rows for the client are quarantined (bad dates): the client is
    # then in quarantined_rows too, and in a second load's client list
    src = next((tmp_path / "landing" / clinic).glob("*sessions*.csv"))
    lines = src.read_text().splitlines()
    mine = [re.sub(r"\d\d/\d\d/\d{4}", "99/99/2026", ln) for ln in lines if f'"{client}"' in ln]
    mine += [ln for ln in lines if '"C0040"' in ln]  # and rows of someone else, loaded
    (src.parent / src.name.replace("_all", "_fix")).write_text("\n".join([lines[0], *mine]) + "\n")
    ingest_all(tmp_path / "config", tmp_path / "landing", unused)

    with ducklake.open_warehouse(read_only=True) as conn:
        before = dict(_values_mentioning(conn, client))
        others = conn.execute(
            "select count(*) from measurements where client_id <> ?", [client]
        ).fetchall()
        # a file left behind by a crashed write (in no snapshot) holding the client's rows
        live = conn.execute(
            "select data_file from ducklake_list_files('wh', 'measurements')"
        ).fetchall()
    for table in ("measurements", "flags", "alert_episodes"):
        assert table in before, table
    assert _history_rows(client) > 0  # a table or a view over current + superseded rows
    assert "quarantined_rows" in before and "loads" in before
    holding = [Path(f) for (f,) in live if _parquet_files_holding(Path(f).parent, client)]
    orphan = holding[0].with_name(f"ducklake-{uuid.uuid4()}.parquet")
    shutil.copy(holding[0], orphan)
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    assert _parquet_files_holding(data, client), "so their absence afterwards means something"
    assert _catalog_values_mentioning(catalog, client), "likewise (column statistics)"

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "forget", "--warehouse", str(unused)]
        + ["--clinic", clinic, "--client", client, "--note", "ticket 481"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert client not in done.stdout + done.stderr
    assert not unused.exists()
    print(f"forget on DuckLake: {seconds:.1f} s")

    assert not orphan.exists()
    assert _parquet_files_holding(data, client) == []
    assert _catalog_values_mentioning(catalog, client) == []
    with ducklake.open_warehouse(read_only=True) as conn:
        assert _values_mentioning(conn, client) == []
    assert _history_rows(client) == 0
    with ducklake.open_warehouse(read_only=True) as conn:
        assert (
            conn.execute(
                "select count(*) from measurements where client_id <> ?", [client]
            ).fetchall()
            == others
        )
        audit = conn.execute(
            "select erasure_id, clinic_id, erased_at is not null, rows_removed, operator_note "
            "from erasures"
        ).fetchall()
        assert len(audit) == 1
        erasure_id, audit_clinic, stamped, removed, note = audit[0]
        assert (erasure_id, audit_clinic, stamped, note) == (1, clinic, True, "ticket 481")
        assert client not in removed
        counts = json.loads(removed)
        assert counts["measurements"] > 0 and counts["quarantined_rows"] > 0
        assert counts["loads.client_ids"] > 0
        # the lake still serves the analyst views afterwards
        assert conn.execute("select count(*) from rupture_episodes").fetchall()[0][0] > 0

    # a second erasure takes the next id from the catalog's sequence
    with ducklake.open_warehouse(read_only=True) as conn:
        other = conn.execute(
            "select client_id from measurements where client_id <> ? limit 1", [client]
        ).fetchall()[0][0]
    from pipelines.erasure import forget

    assert forget(unused, clinic, other).erasure_id == 2
