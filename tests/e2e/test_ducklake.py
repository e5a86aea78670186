"""The DuckLake warehouse (catalog in the local PostgreSQL, Parquet data in tmp_path): two clinics
loaded by two `alliance-watch ingest` processes at once, detection run there, and the results
equal to the embedded DuckDB warehouse's; analysts read while loads run; one file loaded by two
writers at once still loads exactly once.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres; `make services`) and the
`production` extra (duckdb-ext-ducklake, duckdb-ext-postgres); skips with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.detect import pending
from pipelines.detect import ruptures as detect
from pipelines.warehouse import FileResult, StagedFile
from pipelines.warehouse import lake as ducklake
from pipelines.warehouse import load as loader
from tests.conftest import reachable

pytestmark = [pytest.mark.slow, pytest.mark.production]

CLI = [sys.executable, "-m", "pipelines.cli"]
CLINIC_A, CLINIC_B = "pcoms_north", "wai_central"  # what `generate --seed 3 --clinics 2` names


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as c:
        c.autocommit = True
        c.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """(catalog libpq string, data folder) of a throwaway DuckLake, dropped afterwards. The
    environment does not select it (tests select it themselves where they mean to)."""
    if ducklake.extension_dir() is None:
        pytest.skip("duckdb-ext-ducklake / duckdb-ext-postgres not installed (production extra)")
    if not reachable(5432):
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (run `make services`)")
    for name in (ducklake.BACKEND_ENV, ducklake.CATALOG_ENV, ducklake.DATA_ENV):
        monkeypatch.delenv(name, raising=False)
    db = f"aw_lake_{uuid.uuid4().hex[:10]}"
    try:
        _admin_sql(f"create database {db}")
    except Exception as e:  # noqa: BLE001 - the reason is in the skip message
        pytest.skip(f"cannot create a database on the local PostgreSQL: {type(e).__name__}")
    try:
        yield f"dbname={db} host=127.0.0.1 port=5432 user=postgres", tmp_path / "lake-data"
    finally:
        _admin_sql(f"drop database if exists {db} with (force)")


def _lake_env(catalog: str, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[ducklake.BACKEND_ENV] = "ducklake"
    env[ducklake.CATALOG_ENV] = catalog
    env[ducklake.DATA_ENV] = str(data)
    return env


def _embedded_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in (ducklake.BACKEND_ENV, ducklake.CATALOG_ENV, ducklake.DATA_ENV):
        env.pop(name, None)
    return env


def _generate(tmp_path: Path) -> Path:
    gen = tmp_path / "gen"
    subprocess.run(
        [*CLI, "generate", "--out", str(gen), "--seed", "3", "--clinics", "2"]
        + ["--clients", "30", "--period", "quarter"],
        check=True,
        capture_output=True,
        env=_embedded_env(),
    )
    return gen


def _one_clinic_config(gen: Path, clinic: str, out: Path) -> Path:
    (out / "clinics").mkdir(parents=True)
    shutil.copy(gen / "config" / "clinics" / f"{clinic}.yaml", out / "clinics")
    return out


class AnalystReader(threading.Thread):
    """Reads the live lake over and over from its own read-only connection until stopped,
    recording (measurement rows, files in the ledger) per read and any failure."""

    def __init__(self, catalog: str, data: Path) -> None:
        super().__init__(daemon=True)
        self.catalog, self.data = catalog, data
        self.stop = threading.Event()
        self.reads: list[tuple[int, int]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = ducklake.connect(self.catalog, self.data, read_only=True)
                row = conn.execute(
                    "select (select count(*) from measurements), (select count(*) from ingest_files)"
                ).fetchone()
                assert row is not None
                self.reads.append((int(row[0]), int(row[1])))
            except duckdb.Error as e:
                # before a writer has created the lake and its tables there is nothing to read
                if self.reads:
                    self.errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                if conn is not None:
                    conn.close()
                    conn = None
            time.sleep(0.05)
        if conn is not None:
            conn.close()


def _rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return sorted(conn.execute(sql).fetchall(), key=repr)


def test_two_clinics_loaded_at_once_match_the_embedded_warehouse(
    lake: tuple[str, Path], tmp_path: Path
) -> None:
    catalog, data = lake
    gen = _generate(tmp_path)
    landing = gen / "landing"
    env = _lake_env(catalog, data)
    unused = tmp_path / "not-used.duckdb"  # --warehouse is required; DuckLake does not use it

    reader = AnalystReader(catalog, data)
    reader.start()
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [*CLI, "ingest", "--config-dir", str(_one_clinic_config(gen, c, tmp_path / f"cfg-{c}"))]
            + ["--landing", str(landing), "--warehouse", str(unused), "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in (CLINIC_A, CLINIC_B)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    load_seconds = time.monotonic() - started
    reads_during_loads = len(reader.reads)
    reader.stop.set()
    reader.join(timeout=10)
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "loaded" in out
    assert not unused.exists(), "the DuckLake backend must not create the embedded file"
    print(f"two DuckLake ingests at once: {load_seconds:.1f} s, {reads_during_loads} analyst reads")

    # the analyst read all along, without error, and never saw a half-loaded file
    assert not reader.errors, reader.errors
    assert reads_during_loads > 0
    assert [r[1] for r in reader.reads] == sorted(r[1] for r in reader.reads)

    # the same deliveries again: nothing new (exactly once per file)
    again = subprocess.run(
        [*CLI, "ingest", "--config-dir", str(tmp_path / f"cfg-{CLINIC_A}")]
        + ["--landing", str(landing), "--warehouse", str(unused), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "no new files" in again.stdout

    # detection on the lake, with the detection SQL as it is
    with ducklake.open_warehouse(catalog, data) as conn:
        # the two loaders, committing beside each other, each queued its clients for detection
        loaded = conn.execute(
            "select distinct clinic_id, unnest(client_ids) from loads order by all"
        ).fetchall()
        assert loaded and sorted(set(pending.read(conn).clients)) == loaded
        summary = pending.detect_all(conn)  # a full recompute clears what it found pending
        assert not pending.read(conn)
        # detect() stamps its flags' detected_at itself (the lake has no now() default)
        assert conn.execute("select count(*) from flags where detected_at is null").fetchall() == [
            (0,)
        ]
        assert ducklake.stamp_detected(conn) == 0
    assert summary.flags > 0

    # the embedded warehouse from the same deliveries
    embedded = tmp_path / "embedded.duckdb"
    for cmd in (
        ["ingest", "--config-dir", str(gen / "config"), "--landing", str(landing)]
        + ["--warehouse", str(embedded), "--quiet"],
        ["detect", "--warehouse", str(embedded)],
    ):
        subprocess.run([*CLI, *cmd], env=_embedded_env(), check=True, capture_output=True)

    flag_cols = ", ".join(detect.FLAG_COLUMNS)
    with ducklake.open_warehouse(catalog, data, read_only=True) as conn:
        conn.execute(f"attach '{embedded}' as emb (read_only)")
        measure_cols = ", ".join(
            c
            for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_catalog = 'emb' "
                "and table_name = 'measurements' and column_name not in ('load_id', 'loaded_at') "
                "order by ordinal_position"
            ).fetchall()
        )
        ledger_cols = (
            "clinic_id, file_name, sha256, dataset, status, rows_in, rows_loaded, "
            "rows_quarantined, rows_duplicate, error"
        )
        for table, cols in (
            ("measurements", measure_cols),
            ("flags", flag_cols),
            ("ingest_files", ledger_cols),
            ("appointments", "clinic_id, client_id, clinician_id, appointment_date, status"),
        ):
            lake_rows = _rows(conn, f"select {cols} from wh.main.{table}")  # noqa: S608
            emb_rows = _rows(conn, f"select {cols} from emb.main.{table}")  # noqa: S608
            assert lake_rows, table
            assert lake_rows == emb_rows, table
        clinics = {
            c for (c,) in conn.execute("select distinct clinic_id from measurements").fetchall()
        }
        assert clinics == {CLINIC_A, CLINIC_B}
        # the analyst views exist in the lake and read the same as in the embedded file
        assert _rows(conn, "select * from wh.main.rupture_episodes") == _rows(
            conn, "select * from emb.main.rupture_episodes"
        )


def test_an_analyst_reads_a_consistent_snapshot_while_a_load_is_open(
    lake: tuple[str, Path],
) -> None:
    catalog, data = lake
    with ducklake.open_warehouse(catalog, data) as writer:
        writer.execute("begin transaction")
        writer.execute("insert into loads values (1, 'north', 'abc', ['C1'], 1, now())")
        with ducklake.open_warehouse(catalog, data, read_only=True) as analyst:
            assert analyst.execute("select count(*) from loads").fetchall() == [(0,)]
            writer.execute("commit")
            assert analyst.execute("select count(*) from loads").fetchall() == [(1,)]


def test_one_file_loaded_by_two_writers_at_once_loads_exactly_once(
    lake: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both writers find the file new and reach their commit together (a barrier holds each
    first attempt just before its ledger row); DuckLake lets one commit, the other conflicts on
    the clinic's token row, is retried, and finds the file loaded."""
    catalog, data = lake
    src = tmp_path / "first.parquet"
    correction = tmp_path / "correction.parquet"
    with ducklake.open_warehouse(catalog, data) as conn:
        conn.execute(
            f"""
            copy (
                select 'north' as clinic_id, 'C' || lpad(i::varchar, 3, '0') as client_id,
                       '' as episode_id,
                       'T01' as clinician_id, s::integer as session_number,
                       date '2026-03-02' + (7 * s)::integer as session_date, 'SRS' as instrument,
                       'v1' as instrument_version,
                       8.0 as item_1, 8.0 as item_2, 8.0 as item_3, 8.0 as item_4,
                       null::double as item_5, null::double as item_6, null::double as item_7,
                       null::double as item_8, null::double as item_9, null::double as item_10,
                       null::double as item_11, null::double as item_12, 32.0 as total,
                       'x.csv' as source_file, (i * 10 + s)::bigint as source_line
                from range(1, 4) as c(i), range(1, 5) as t(s)
            ) to '{src}' (format parquet)
            """  # noqa: S608
        )
        conn.execute(
            f"copy (select * replace (7.0 as item_1, 31.0 as total) from read_parquet('{src}') "  # noqa: S608
            f"where session_number = 4) to '{correction}' (format parquet)"
        )

    def staged(path: Path, name: str, n: int) -> StagedFile:
        result = FileResult(
            clinic_id="north",
            file_name=name,
            sha256=name * 4,
            dataset="measures",
            status="loaded",
            rows_in=n,
            rows_loaded=n,
        )
        return StagedFile(result=result, valid_path=path)

    with ducklake.open_warehouse(catalog, data) as conn:
        first = loader.load_staged(conn, staged(src, "first", 12))
    assert (first.status, first.rows_loaded) == ("loaded", 12)

    barrier = threading.Barrier(2, timeout=20)
    held = threading.local()
    real_insert = loader._ledger_insert

    def insert_after_both_arrive(conn: duckdb.DuckDBPyConnection, r: FileResult) -> None:
        if not getattr(held, "done", False):
            held.done = True
            barrier.wait()
        real_insert(conn, r)

    monkeypatch.setattr(loader, "_ledger_insert", insert_after_both_arrive)
    attempts: list[str] = []
    real_once = loader._load_once

    def counted_once(
        conn: duckdb.DuckDBPyConnection, s: StagedFile, backend: Any
    ) -> tuple[FileResult, StagedFile]:
        attempts.append(s.result.file_name)
        return real_once(conn, s, backend)

    monkeypatch.setattr(loader, "_load_once", counted_once)
    results: list[FileResult] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            with ducklake.open_warehouse(catalog, data) as conn:
                results.append(loader.load_staged(conn, staged(correction, "fix", 3)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(r.status for r in results) == ["already_loaded", "loaded"]
    assert len(attempts) == 3, "the writer that lost the commit race is retried once"
    loaded = next(r for r in results if r.status == "loaded")
    assert loaded.rows_loaded == 3 and loaded.clients_touched == ["C001", "C002", "C003"]

    with ducklake.open_warehouse(catalog, data, read_only=True) as conn:
        assert conn.execute(
            "select count(*), count(*) filter (where total = 31.0), "
            "count(distinct (client_id, session_number)) from measurements"
        ).fetchall() == [(12, 3, 12)]
        assert conn.execute(
            "select count(*), count(*) filter (where superseded_at is not null) "
            "from measurements_history"
        ).fetchall() == [(15, 3)]
        assert conn.execute(
            "select file_name, status from ingest_files order by file_name"
        ).fetchall() == [("first", "loaded"), ("fix", "loaded")]
        assert conn.execute("select count(*), count(distinct load_id) from loads").fetchall() == [
            (2, 2)
        ]
