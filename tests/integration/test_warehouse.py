"""Warehouse behaviour through the real ingest: rerun, re-delivery, corrections with history,
clients touched per load, parts of a large file, and the writer lock."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.errors import WarehouseBusy
from pipelines.ingest.run import ingest_all
from pipelines.warehouse import connect
from tests.conftest import reference_row

ROOT = Path(__file__).resolve().parents[2]


def srs(client: str, session: int, score: float, date: str | None = None) -> str:
    items = [score] * 4
    return reference_row(client, "T01", date or f"2026-03-{session:02d}", session, "SRS", items)


def query(wh: Path, sql: str) -> list[tuple]:
    conn = duckdb.connect(str(wh), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_rerun_loads_nothing_and_redelivery_is_a_duplicate(
    tmp_path: Path, reference_config_dir: Path, write_reference
) -> None:
    wh = tmp_path / "wh.duckdb"
    landing = tmp_path / "landing"
    first = write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C2", 1, 8.0)])
    results = ingest_all(reference_config_dir, landing, wh)
    assert [(r.status, r.rows_loaded) for r in results] == [("loaded", 2)]

    assert ingest_all(reference_config_dir, landing, wh) == []  # a rerun: nothing new
    write_reference("measures_1_copy.csv", first.read_text().splitlines()[1:])
    again = ingest_all(reference_config_dir, landing, wh)
    assert [(r.file_name, r.status, r.rows_loaded) for r in again] == [
        ("measures_1_copy.csv", "duplicate", 0)
    ]
    assert "measures_1.csv" in (again[0].error or "")
    assert query(wh, "select count(*) from measurements") == [(2,)]
    assert query(wh, "select count(*) from measurements_history") == [(2,)]
    assert query(wh, "select file_name, status from ingest_files order by file_name") == [
        ("measures_1.csv", "loaded"),
        ("measures_1_copy.csv", "duplicate"),
    ]


def test_correction_supersedes_and_history_keeps_both(
    tmp_path: Path, reference_config_dir: Path, write_reference
) -> None:
    wh = tmp_path / "wh.duckdb"
    landing = tmp_path / "landing"
    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C1", 2, 8.0), srs("C2", 1, 7.0)])
    ingest_all(reference_config_dir, landing, wh)
    # the clinic re-exports: C1 session 2 corrected, C2 unchanged, C3 new
    write_reference("measures_2.csv", [srs("C1", 2, 6.5), srs("C2", 1, 7.0), srs("C3", 1, 9.5)])
    (r,) = ingest_all(reference_config_dir, landing, wh)
    assert (r.rows_in, r.rows_loaded, r.rows_duplicate) == (3, 2, 1)
    assert sorted(r.clients_touched) == ["C1", "C3"]

    current = query(
        wh, "select client_id, session_number, total, source_file from measurements order by 1, 2"
    )
    assert current == [
        ("C1", 1, 36.0, "measures_1.csv"),
        ("C1", 2, 26.0, "measures_2.csv"),
        ("C2", 1, 28.0, "measures_1.csv"),
        ("C3", 1, 38.0, "measures_2.csv"),
    ]
    history = query(
        wh,
        "select total, source_file, superseded_at is not null from measurements_history "
        "where client_id = 'C1' and session_number = 2 order by loaded_at",
    )
    assert history == [(32.0, "measures_1.csv", True), (26.0, "measures_2.csv", False)]
    loads = query(wh, "select client_ids, rows_loaded from loads order by load_id")
    assert loads == [(["C1", "C2"], 3), (["C1", "C3"], 2)]


def test_a_file_larger_than_a_part_loads_like_one_piece(
    tmp_path: Path, reference_config_dir: Path, write_reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of ~2 KB: line numbers stay the file's, copies across parts are duplicates and
    conflicting copies across parts are quarantined, exactly as within one part."""

    monkeypatch.setenv("ALLIANCE_WATCH_PART_BYTES", str(2048))
    rows = [srs(f"C{i:03d}", 1 + i % 9, 5.0 + (i % 5)) for i in range(60)]
    rows.append(rows[0])  # an exact copy of line 2, far away in the last part
    rows.append(srs("C001", 2, 1.0))  # conflicts with line 3 (C001 session 2)
    write_reference("measures_big.csv", rows)
    (r,) = ingest_all(reference_config_dir, tmp_path / "landing", tmp_path / "wh.duckdb")
    assert (r.rows_in, r.rows_loaded, r.rows_duplicate, r.rows_quarantined) == (62, 59, 1, 2)
    wh = tmp_path / "wh.duckdb"
    assert query(wh, "select min(source_line), max(source_line) from measurements") == [(2, 61)]
    assert query(wh, "select list(line_number order by line_number) from quarantined_rows") == [
        ([3, 63],)
    ]
    assert not list((tmp_path / "landing" / "ref_clinic").glob("*.part*"))


def test_clients_touched_leave_out_a_client_whose_only_rows_were_held_back(
    tmp_path: Path, reference_config_dir: Path, write_reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clients a load touched are listed while preparing; a client whose only rows
    conflict across parts (all held back) is not among them, nor is a client whose rows were
    identical to what was already loaded."""

    monkeypatch.setenv("ALLIANCE_WATCH_PART_BYTES", str(2048))
    rows = [srs(f"C{i:03d}", 1 + i % 9, 5.0 + (i % 5)) for i in range(60)]
    rows.insert(1, srs("C900", 1, 4.0))
    rows.append(srs("C900", 1, 6.0))  # the same key in the last part, another score
    write_reference("measures_1.csv", rows)
    wh = tmp_path / "wh.duckdb"
    (r,) = ingest_all(reference_config_dir, tmp_path / "landing", wh)
    assert r.rows_quarantined == 2 and "C900" not in r.clients_touched
    loaded = query(wh, "select list(distinct client_id order by client_id) from measurements")
    assert query(wh, "select client_ids from loads") == loaded
    # a later export repeating C001-C005 unchanged and correcting C006: only C006 is touched
    write_reference("measures_2.csv", [*rows[2:7], srs("C006", 7, 9.0)])
    (r2,) = ingest_all(reference_config_dir, tmp_path / "landing", wh)
    assert (r2.rows_duplicate, r2.clients_touched) == (5, ["C006"])


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def hold(wh: Path, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(wh), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    return p


def test_writer_waits_for_the_lock_then_fails_clearly(tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    duckdb.connect(str(wh)).close()
    holder = hold(wh, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(WarehouseBusy, match="held by another process"):
            connect(wh, timeout_s=1.5)
        assert 1.4 <= time.monotonic() - t0 < 10
    finally:
        holder.kill()
        holder.wait()
    connect(wh, timeout_s=5).close()  # free again once the holder is gone


def test_writer_gets_the_file_when_the_holder_lets_go(tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    duckdb.connect(str(wh)).close()
    holder = hold(wh, 1.5)
    try:
        conn = connect(wh, timeout_s=20)  # waits out the holder instead of failing
        conn.close()
    finally:
        holder.wait()


def test_cli_says_busy_in_one_line(tmp_path: Path, reference_config_dir: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    (tmp_path / "landing" / "ref_clinic").mkdir(parents=True)
    duckdb.connect(str(wh)).close()
    holder = hold(wh, 60)
    try:
        cli = [sys.executable, "-m", "pipelines.cli"]
        args = ["ingest", "--config-dir", str(reference_config_dir)]
        args += ["--landing", str(tmp_path / "landing"), "--warehouse", str(wh)]
        done = subprocess.run(
            [*cli, *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"ALLIANCE_WATCH_LOCK_TIMEOUT_S": "1", "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "held by another process" in lines[0]


def test_a_file_rejected_under_a_wrong_config_is_offered_again_once_the_config_is_fixed(
    tmp_path: Path, write_reference
) -> None:
    config = tmp_path / "config"
    clinic_yaml = config / "clinics" / "ref_clinic.yaml"
    clinic_yaml.parent.mkdir(parents=True)
    # the clinic's config says semicolon, its export is comma-separated
    clinic_yaml.write_text("clinic_id: ref_clinic\ntimezone: UTC\nformat: custom\ndelimiter: ';'\n")
    wh, landing = tmp_path / "wh.duckdb", tmp_path / "landing"
    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C2", 1, 8.0)])
    (r,) = ingest_all(config, landing, wh)
    assert (r.status, r.error.split(":")[0]) == ("rejected", "wrong_delimiter")
    assert ingest_all(config, landing, wh) == []  # same config: not judged twice

    clinic_yaml.write_text("clinic_id: ref_clinic\ntimezone: UTC\nformat: custom\n")
    (again,) = ingest_all(config, landing, wh)
    assert (again.status, again.rows_loaded) == ("loaded", 2)
    assert query(wh, "select status from ingest_files") == [("loaded",)]
    # and re-sent under another name it is a duplicate of the accepted delivery
    write_reference("measures_1_resent.csv", [srs("C1", 1, 9.0), srs("C2", 1, 8.0)])
    (dup,) = ingest_all(config, landing, wh)
    assert dup.status == "duplicate"


def test_a_file_that_is_not_a_duckdb_database_is_refused(tmp_path: Path) -> None:
    from pipelines.errors import AllianceWatchError

    not_a_db = tmp_path / "truth.csv"
    not_a_db.write_text("kind,clinic_id\nrupture,c1\n")
    with pytest.raises(AllianceWatchError, match="not a DuckDB database file"):
        connect(not_a_db)
    assert not_a_db.read_text() == "kind,clinic_id\nrupture,c1\n"


def test_one_current_row_per_key_through_repeated_corrections(
    tmp_path: Path, reference_config_dir: Path, write_reference
) -> None:
    """`measurements` has no key index (migration 012): the loader alone keeps one row per key."""
    wh = tmp_path / "wh.duckdb"
    landing = tmp_path / "landing"
    for n, score in enumerate((9.0, 8.0, 8.0, 7.0), 1):
        write_reference(f"measures_{n}.csv", [srs("C1", 1, score), srs("C2", n, 5.0)])
        ingest_all(reference_config_dir, landing, wh)
    assert query(
        wh,
        "select count(*), count(distinct (clinic_id, client_id, session_number, instrument)) "
        "from measurements",
    ) == [(5, 5)]
    assert query(wh, "select total from measurements where client_id = 'C1'") == [(28.0,)]
    versions = query(
        wh,
        "select total, superseded_at is null from measurements_history "
        "where client_id = 'C1' order by loaded_at",
    )
    assert versions == [(36.0, False), (32.0, False), (28.0, True)]
    # the key index is gone (it cost a third of every load)
    assert query(
        wh,
        "select count(*) from duckdb_constraints() "
        "where table_name = 'measurements' and constraint_type = 'PRIMARY KEY'",
    ) == [(0,)]


def test_migration_012_keeps_every_measurement(tmp_path: Path) -> None:
    """A warehouse created before 012 keeps its rows when the table is rebuilt without a key."""
    from pipelines import warehouse

    wh = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(wh))
    conn.execute(
        "create table schema_migrations (version varchar primary key, applied_at timestamptz default now())"
    )
    for f in sorted((warehouse.sql_dir() / "schema").glob("*.sql")):
        if f.stem < "012":
            conn.execute(f.read_text(encoding="utf-8"))
            conn.execute("insert into schema_migrations (version) values (?)", [f.stem])
    conn.execute(
        "insert into measurements (clinic_id, client_id, clinician_id, session_number, "
        "session_date, instrument, instrument_version, total, source_file, source_line, sha256, "
        "load_id) values ('c', 'K1', 'T1', 1, date '2026-01-05', 'SRS', 'v', 30, 'f.csv', 2, "
        "'s', 1)"
    )
    conn.close()
    with warehouse.open_warehouse(wh) as conn:
        rows = conn.execute(
            "select client_id, total, loaded_at is not null from measurements"
        ).fetchall()
    assert rows == [("K1", 30.0, True)]


def test_views_are_created_after_the_views_they_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view may read another view whose name sorts after it (clinic_data_quality_weekly
    reads ingest_attempts); a relation named only in a comment is no dependency, so two views
    that mention each other in comments are no cycle."""
    from pipelines import warehouse

    views = tmp_path / "views"
    views.mkdir()
    (views / "a_total.sql").write_text(
        "-- counts z_base; see also m_other\ncreate or replace view a_total as\n"
        "select count(*) as n from z_base\n"
    )
    (views / "m_other.sql").write_text(
        "-- a_total counts this too\ncreate or replace view m_other as select 1 as x\n"
    )
    (views / "z_base.sql").write_text("create or replace view z_base as select 1 as x\n")
    monkeypatch.setenv("ALLIANCE_WATCH_SQL_DIR", str(tmp_path))
    assert [f.stem for f in warehouse.view_files()] == ["m_other", "z_base", "a_total"]
    conn = duckdb.connect()
    assert warehouse.create_views(conn) == ["m_other", "z_base", "a_total"]
    assert conn.execute("select n from a_total").fetchall() == [(1,)]


def test_a_transaction_commits_at_its_end_or_early_return_and_rollback_writes_nothing() -> None:
    from pipelines.warehouse import transaction

    conn = duckdb.connect()
    conn.execute("create table t (n integer)")

    def write(n: int, rollback: bool = False) -> None:
        with transaction(conn) as tx:
            conn.execute("insert into t values (?)", [n])
            if rollback:
                tx.rollback()
                return
            if n == 2:
                return  # an early return commits
            conn.execute("insert into t values (?)", [n * 10])

    write(1)
    write(2)
    write(3, rollback=True)
    with pytest.raises(ValueError), transaction(conn):
        conn.execute("insert into t values (4)")
        raise ValueError("the block failed")
    assert conn.execute("select n from t order by n").fetchall() == [(1,), (2,), (10,)]


def migrated() -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse with every embedded migration applied."""
    from pipelines.warehouse import migrate

    conn = duckdb.connect()
    migrate(conn)
    return conn


def test_table_columns_are_the_migrated_tables_and_flag_columns_derive_from_flags() -> None:
    """`table_columns` is a table as sql/schema/ leaves it, in order; detection writes every
    column of `flags` but the time the warehouse stamps on a new flag."""
    from pipelines.detect.ruptures import FLAG_COLUMNS
    from pipelines.warehouse import table_columns

    flags = (
        migrated()
        .execute(
            "select column_name from duckdb_columns() "
            "where schema_name = 'main' and table_name = 'flags' order by column_index"
        )
        .fetchall()
    )
    assert table_columns("flags") == tuple(c for (c,) in flags)
    assert tuple(c for (c,) in flags if c != "detected_at") == FLAG_COLUMNS
    with pytest.raises(KeyError, match="no table"):
        table_columns("no_such_table")


def test_the_checked_in_ducklake_ddl_is_the_one_generated_from_the_embedded_migrations() -> None:
    """sql/ducklake/ is generated from sql/schema/ (`python -m pipelines.warehouse.lake_ddl`):
    a new embedded migration without its regenerated lake form fails here."""
    from pipelines.warehouse import sql_dir
    from pipelines.warehouse.lake_ddl import generate

    folder = sql_dir() / "ducklake"
    checked_in = {f.name: f.read_text(encoding="utf-8") for f in folder.glob("*.sql")}
    assert checked_in == generate()


def test_the_ducklake_ddl_restates_every_embedded_table_column_for_column() -> None:
    """The lake form holds every embedded table, column for column (it runs the DuckLake DDL
    in plain DuckDB, no extension needed). schema_migrations is created in code there, and
    clinic_load_tokens exists only there (it serializes DuckLake writers)."""
    from pipelines.warehouse import migrate, sql_dir

    lake = duckdb.connect()
    for f in sorted((sql_dir() / "ducklake").glob("*.sql")):
        lake.execute(f.read_text(encoding="utf-8"))
    embedded = duckdb.connect()
    migrate(embedded)
    columns = (
        "select table_name, column_name, data_type from information_schema.columns as c "
        "inner join information_schema.tables as t using (table_schema, table_name) "
        "where t.table_type = 'BASE TABLE' and table_schema = 'main'"
    )
    emb = {r for r in embedded.execute(columns).fetchall() if r[0] != "schema_migrations"}
    lk = {r for r in lake.execute(columns).fetchall() if r[0] != "clinic_load_tokens"}
    assert sorted(emb - lk) == [] and sorted(lk - emb) == []


def computed_not_null_columns() -> set[tuple[str, str]]:
    """(table, column) of every embedded column that is `not null` with a computed default
    (`now()`, `current_timestamp`, a sequence)."""
    rows = (
        migrated()
        .execute(
            "select table_name, column_name, column_default from duckdb_columns() "
            "where schema_name = 'main' and not is_nullable and column_default is not null"
        )
        .fetchall()
    )
    return {
        (t, c) for t, c, d in rows if re.search(r"now\(\)|current_timestamp|nextval", str(d), re.I)
    }


def test_the_lake_keeps_not_null_where_its_writers_supply_the_computed_value() -> None:
    """A value the embedded file computes is written by the code on a lake, with the row, so
    the lake says `not null` too (a writer that forgot it fails there); only a column stamped
    after the insert (`STAMPED_AFTER_INSERT`) is nullable."""
    from pipelines.warehouse import sql_dir
    from pipelines.warehouse.lake_ddl import STAMPED_AFTER_INSERT

    computed = computed_not_null_columns()
    assert ("ingest_files", "received_at") in computed and computed >= STAMPED_AFTER_INSERT
    lake = duckdb.connect()
    for f in sorted((sql_dir() / "ducklake").glob("*.sql")):
        lake.execute(f.read_text(encoding="utf-8"))
    nullable = {
        (t, c)
        for t, c in lake.execute(
            "select table_name, column_name from duckdb_columns() "
            "where schema_name = 'main' and is_nullable"
        ).fetchall()
    }
    assert sorted(computed & nullable) == sorted(STAMPED_AFTER_INSERT)


def test_the_lake_form_of_a_migration_keeps_its_data_and_fills_defaults() -> None:
    """Keys, sequences and non-literal defaults are dropped (`not null` stays); a new column's
    literal default is written into the rows already there; renames stay renames; data
    statements stay."""
    from pipelines.warehouse.lake_ddl import changes, read_catalog

    conn = duckdb.connect()
    conn.execute("create sequence s")
    conn.execute(
        "create table t (id bigint primary key default nextval('s'), ts timestamptz "
        "default now(), n integer not null default 0)"
    )
    before = read_catalog(conn)
    conn.execute("alter table t add column kind varchar default 'x'")
    assert changes(before, read_catalog(conn)) == [
        "alter table t add column kind varchar;\n",
        "update t set kind = 'x' where kind is null;\n",
    ]
    before = read_catalog(conn)
    conn.execute("alter table t rename to u")
    assert changes(before, read_catalog(conn)) == ["alter table t rename to u;\n"]
    assert changes({}, read_catalog(conn)) == [
        "create table if not exists u (\n    id bigint not null,\n    ts timestamp with time "
        "zone,\n    n integer not null default 0,\n    kind varchar default 'x'\n);\n"
    ]


WRITER_MID_TRANSACTION = textwrap.dedent(
    """
    import sys, time
    from pipelines.warehouse import open_warehouse
    with open_warehouse(sys.argv[1]) as conn:
        conn.execute("create table if not exists kept (n integer)")
        conn.execute("insert into kept values (1)")
        conn.execute("begin transaction")
        conn.execute("insert into kept select range from range(100000)")
        print("writing", flush=True)
        time.sleep(120)
    """
)


def test_a_writer_killed_mid_transaction_frees_the_lock_at_once(tmp_path: Path) -> None:
    """The warehouse lock is DuckDB's lock on the file (fcntl), which the kernel drops when its
    holder dies: a SIGKILLed load leaves no stale lock to detect or clean up, and its open
    transaction is simply not there (issue #20 item 3)."""
    wh = tmp_path / "wh.duckdb"
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER_MID_TRANSACTION, str(wh)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    with pytest.raises(WarehouseBusy):  # held while the writer lives
        connect(wh, timeout_s=0.5).close()
    p.kill()
    p.wait()
    t0 = time.monotonic()
    conn = connect(wh, timeout_s=5)
    try:
        assert time.monotonic() - t0 < 1.0  # no waiting for a timeout: the lock went with it
        assert conn.execute("select count(*) from kept").fetchone() == (1,)
    finally:
        conn.close()
