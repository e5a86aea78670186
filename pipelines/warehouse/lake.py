"""The DuckLake warehouse backend: the same relations, loader and detection SQL on a warehouse
whose catalog is a PostgreSQL database and whose data is Parquet on a shared path.

Selected by configuration (env ``ALLIANCE_WATCH_WAREHOUSE_BACKEND=ducklake``, with
``ALLIANCE_WATCH_DUCKLAKE_CATALOG``, a libpq connection string, and
``ALLIANCE_WATCH_DUCKLAKE_DATA``, a folder every worker sees; `pipelines.settings`); the
``--warehouse`` path is then not used. `LakeBackend` extends the embedded backend where the two
differ; the loader (`pipelines.warehouse.load`) is the same. Unlike the embedded file, several processes may load at once and analysts read the live
warehouse (each transaction sees one committed snapshot).

DuckLake has no primary keys, sequences or non-literal defaults, so:
* a changed measurement is deleted and inserted again (never insert-or-replace);
* load ids and erasure ids come from sequences in the catalog's PostgreSQL database;
* every file load updates its clinic's row in ``clinic_load_tokens``: two loads of one clinic at
  once then conflict (plain inserts never do), the later one is retried and finds the earlier
  one's ledger row, so each file still loads exactly once.
An erasure (`alliance-watch forget`) deletes the rows and then `purge_erased` makes them
physically gone: data files with deletes are rewritten, every older snapshot is expired and its
files removed, orphaned files holding the client are deleted and table statistics that quote
the client are recomputed.
The extensions are loaded from the ``duckdb-ext-ducklake`` / ``duckdb-ext-postgres`` wheels
(the ``production`` extra); nothing is installed from the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from pipelines.errors import AllianceWatchError, CatalogUnavailable, WarehouseBusy
from pipelines.settings import (
    BACKEND_ENV,
    CATALOG_ENV,
    DATA_ENV,
    WarehouseSettings,
    warehouse_settings,
)
from pipelines.warehouse.backend import Erasure, transaction
from pipelines.warehouse.batch import KEY_JOIN, insert_measurements
from pipelines.warehouse.embedded import EmbeddedBackend
from pipelines.warehouse.records import FileResult, StagedFile, remove_staged
from pipelines.warehouse.schema import create_views, load_registry, sql_dir

__all__ = ["BACKEND_ENV", "CATALOG_ENV", "DATA_ENV", "LakeBackend"]

log = logging.getLogger(__name__)
ALIAS = "wh"  # the attached lake; `use wh` makes the unqualified relation names resolve to it
LOAD_ID_SEQUENCE = "alliance_watch_load_id_seq"  # in the catalog's PostgreSQL database
ERASURE_ID_SEQUENCE = "alliance_watch_erasure_id_seq"  # likewise (`erasures.erasure_id`)
METADATA_SCHEMA = "public"  # where DuckLake keeps its catalog tables in that database
EXTENSION_VERSION = "v1.4.4"
T = TypeVar("T")
# per file transaction (and per migration) on a write-write conflict, and per opening of the
# lake cut short by the catalog (0.1 s doubling to 2 s: ~7 s in all)
MAX_ATTEMPTS = 8


def extension_dir() -> Path | None:
    """The folder holding ``v1.4.4/<platform>/ducklake.duckdb_extension`` from the
    ``duckdb-ext-*`` wheels (DuckDB's `extension_directory`), or None when not installed."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        root = Path(base) / "extensions"
        if any((root / EXTENSION_VERSION).glob("*/ducklake.duckdb_extension")) and any(
            (root / EXTENSION_VERSION).glob("*/postgres_scanner.duckdb_extension")
        ):
            return root
    return None


def settings_from_env() -> tuple[str, str]:
    """(catalog libpq string, data folder) from the settings; an error naming the variable
    when one is missing."""
    s = warehouse_settings()
    missing = [name for name, v in ((CATALOG_ENV, s.catalog), (DATA_ENV, s.data)) if not v]
    if missing:
        raise AllianceWatchError(
            f"{BACKEND_ENV}=ducklake needs {' and '.join(missing)} "
            "(a libpq string for the catalog database, a folder for the Parquet data)"
        )
    return s.catalog, s.data


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(
    catalog: str | None = None, data_path: str | Path | None = None, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as `wh` and in use (unqualified names are the
    warehouse's; temp relations stay in memory). Writers also attach the catalog database itself
    (as ``aw_pg``) for load ids. Arguments default to the environment (`settings_from_env`).
    Opened again on a new connection when the catalog cut it short (`retrying`)."""
    if catalog is None or data_path is None:
        env_catalog, env_data = settings_from_env()
        catalog = catalog if catalog is not None else env_catalog
        data_path = data_path if data_path is not None else env_data
    ext = extension_dir()
    if ext is None:
        raise AllianceWatchError(
            "the DuckLake warehouse needs the duckdb-ext-ducklake and duckdb-ext-postgres "
            "packages (install the project with its `production` extra)"
        )
    data = Path(data_path)
    if not read_only:
        data.mkdir(parents=True, exist_ok=True)
    options = f"data_path {_quote(str(data) + os.sep)}"
    if read_only:
        options += ", read_only"

    def open_once() -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(
            config={
                "memory_limit": warehouse_settings().memory_limit,
                # never fetch anything from the network: the wheels hold the extensions
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        try:
            conn.execute(f"set extension_directory = {_quote(str(ext))}")
            conn.execute("load ducklake")
            conn.execute("load postgres")
            conn.execute(f"attach {_quote('ducklake:postgres:' + catalog)} as {ALIAS} ({options})")
            conn.execute(f"use {ALIAS}")  # reads the lake's tables from the catalog
            if not read_only:
                conn.execute(f"attach {_quote(catalog)} as aw_pg (type postgres)")
                # our own bounded retry (load_staged) re-runs a conflicting file from the start
                conn.execute("set ducklake_max_retry_count = 10")
        except BaseException:
            conn.close()  # a half-made attach stays on the closed connection
            raise
        return conn

    # Attaching the lake and its first use read DuckLake's metadata over several catalog
    # queries: the first attach to an empty catalog database creates DuckLake's metadata tables
    # (two processes doing that at once collide in PostgreSQL, and the loser attaches again once
    # the winner's tables exist), and a catalog connection cut in the middle (a restart of its
    # PostgreSQL) is opened again; nothing was written either way.
    return retrying(
        "connecting to the warehouse", open_once, also=_is_init_race, first_delay=0.1, busy=None
    )


def _is_init_race(e: duckdb.Error) -> bool:
    return "failed to initialize ducklake" in str(e).lower()


@contextlib.contextmanager
def open_warehouse(
    catalog: str | None = None, data_path: str | Path | None = None, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """connect() + migrate() (for writers), closed on exit."""
    conn = connect(catalog, data_path, read_only=read_only)
    try:
        if not read_only:
            migrate(conn)
        yield conn
    finally:
        conn.close()


def _is_conflict(e: duckdb.Error) -> bool:
    text = str(e).lower()
    return isinstance(e, duckdb.TransactionException) or "conflict" in text


def _busy(what: str) -> WarehouseBusy:
    return WarehouseBusy(f"{what}: conflicted with other writers {MAX_ATTEMPTS} times; retry later")


# what libpq says when the catalog's server went away under a connection or refuses new ones
_CATALOG_LOST = (
    "server closed the connection",
    "terminating connection",
    "connection to server",
    "could not connect to server",
    "no connection to the server",
    "connection refused",
    "ssl syscall error",
    "the database system is starting up",
    "the database system is shutting down",
)


# DuckLake's own catalog transaction (its metadata reads on attach) failed under it: its next
# query finds that transaction aborted. Only this prefix: DuckDB says "Current transaction is
# aborted" alone after an error inside a transaction of ours, which is not the catalog's doing.
_CATALOG_TX_ABORTED = "failed to load existing ducklake: current transaction is aborted"


def is_catalog_lost(e: BaseException) -> bool:
    """Whether a DuckDB error is the catalog's PostgreSQL gone (restarted, unreachable)."""
    if not isinstance(e, duckdb.Error):
        return False
    text = str(e).lower()
    return _CATALOG_TX_ABORTED in text or any(t in text for t in _CATALOG_LOST)


def catalog_unavailable(what: str) -> CatalogUnavailable:
    """The error for `what` when the catalog's PostgreSQL is gone; says a retry is safe."""
    return CatalogUnavailable(
        f"{what}: the DuckLake catalog (PostgreSQL, {CATALOG_ENV}) dropped or refused the "
        "connection: restarted or unreachable; nothing in flight was committed, so retry "
        "once it answers again"
    )


def retrying(
    what: str,
    attempt_fn: Callable[[], T],
    also: Callable[[duckdb.Error], bool] = _is_conflict,
    first_delay: float = 0.05,
    busy: Callable[[str], Exception] | None = _busy,
) -> T:
    """Run `attempt_fn()` (one whole transaction, or one opening of the lake) up to
    MAX_ATTEMPTS times while it fails on the catalog's connection lost (a restart of its
    PostgreSQL: nothing in flight committed, and the postgres extension connects again) or on
    an error `also` names (by default a write-write conflict with another process), pausing a
    little longer each time; then CatalogUnavailable, or `busy(what)` (WarehouseBusy; None:
    the last error itself)."""
    delay = first_delay
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt_fn()
        except duckdb.Error as e:
            lost = is_catalog_lost(e)
            if not lost and not also(e):
                raise
            if lost:
                log.warning("%s: the catalog's connection was lost; trying again", what)
                if attempt == MAX_ATTEMPTS:
                    raise catalog_unavailable(what) from None
            if attempt == MAX_ATTEMPTS:
                if busy is None:
                    raise
                raise busy(what) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _views_version() -> str:
    digest = hashlib.sha256()
    for f in sorted((sql_dir() / "views").glob("*.sql")):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return f"views-{digest.hexdigest()[:16]}"


def migrate(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every sql/ducklake/*.sql not yet applied, the instrument registry and the analyst
    views (sql/views/, again whenever their text changed), in one transaction; return the
    versions applied. Several processes may migrate at once: the losers retry and find it done."""
    return retrying("warehouse migration", lambda: _migrate_once(conn))


def _migrate_once(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """One transaction per migration file (DuckLake 1.4 cannot find a table created earlier in
    a transaction once another table was dropped in it), then the registry and views in one."""
    applied: list[str] = []
    with transaction(conn):
        conn.execute(
            "create table if not exists schema_migrations "
            "(version varchar not null, applied_at timestamptz)"
        )
    for f in sorted((sql_dir() / "ducklake").glob("*.sql")):
        with transaction(conn):
            version = f"ducklake-{f.stem}"
            if conn.execute(
                "select count(*) from schema_migrations where version = ?", [version]
            ).fetchall()[0][0]:
                continue
            conn.execute(f.read_text(encoding="utf-8"))
            conn.execute("insert into schema_migrations values (?, now())", [version])
            applied.append(version)
    views = _views_version()
    with transaction(conn):
        done = {r[0] for r in conn.execute("select version from schema_migrations").fetchall()}
        if applied:
            load_registry(conn)
        if views not in done:
            create_views(conn)
            conn.execute("insert into schema_migrations values (?, now())", [views])
            applied.append(views)
    _ensure_load_id_sequence(conn)
    return applied


def _ensure_load_id_sequence(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the id sequences (load ids, erasure ids) in the catalog database if missing."""
    for sequence in (LOAD_ID_SEQUENCE, ERASURE_ID_SEQUENCE):
        # `if not exists` can still race another creator in PostgreSQL: a second try sees it
        for attempt in range(3):
            try:
                conn.execute(
                    "call postgres_execute('aw_pg', ?)",
                    [f"create sequence if not exists {sequence}"],
                )
                break
            except duckdb.Error:
                if attempt == 2:
                    raise
                time.sleep(0.1)


def _next_value(conn: duckdb.DuckDBPyConnection, sequence: str) -> int:
    """nextval() of a PostgreSQL sequence: unique across every writer, never rolled back."""
    row = conn.execute(
        f"select * from postgres_query('aw_pg', 'select nextval(''{sequence}'')')"  # noqa: S608
    ).fetchone()
    assert row is not None
    return int(row[0])


def _next_load_id(conn: duckdb.DuckDBPyConnection) -> int:
    return _next_value(conn, LOAD_ID_SEQUENCE)


def next_erasure_id(conn: duckdb.DuckDBPyConnection) -> int:
    """A new `erasures.erasure_id` (the embedded file's `erasure_id_seq`, on the lake)."""
    return _next_value(conn, ERASURE_ID_SEQUENCE)


def _claim_clinic(conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None:
    """Make sure the clinic has a token row (its own transaction: a race may add two, which is
    harmless: every load updates all of its clinic's rows)."""
    if conn.execute(
        "select count(*) from clinic_load_tokens where clinic_id = ?", [clinic_id]
    ).fetchall()[0][0]:
        return
    retrying(
        f"clinic {clinic_id} token",
        lambda: conn.execute(
            "insert into clinic_load_tokens select ?, 0 "
            "where not exists (select 1 from clinic_load_tokens where clinic_id = ?)",
            [clinic_id, clinic_id],
        ),
    )


def _attempt_copy(staged: StagedFile, r: FileResult) -> StagedFile:
    """The staged file for one attempt with this attempt's result: `release_held_rows` narrows
    the staged Parquet, so each attempt narrows its own copy of it."""

    def copy_of(path: Path | None) -> Path | None:
        if path is None:
            return None
        target = path.with_name(f"{path.name}.attempt")
        remove_staged(target)
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copy2(path, target)
        return target

    return StagedFile(
        result=r,
        valid_path=copy_of(staged.valid_path),
        quarantine_path=copy_of(staged.quarantine_path),
        keys_unique=staged.keys_unique,
        clients=staged.clients,
    )


def stamp_detected(conn: duckdb.DuckDBPyConnection) -> int:
    """Give every flag without a `detected_at` the transaction's time (a lake has no `now()`
    default); returns the rows stamped. Detection stamps its own new flags in its transaction,
    so only flags written without a time are changed."""

    def once() -> int:
        row = conn.execute(
            "update flags set detected_at = now() where detected_at is null"
        ).fetchone()
        return int(row[0]) if row else 0

    return retrying("stamping flags", once)


def purge_erased(conn: duckdb.DuckDBPyConnection, code: str, erased_before: Any) -> dict[str, int]:
    """After an erasure of `code` committed (at `erased_before`): make its rows physically gone.

    DuckLake keeps deleted rows in the Parquet files of older snapshots (a delete only adds a
    delete file), so: inlined rows are flushed to files, every data file with deletes is
    rewritten without them, all snapshots but the current one are expired and their files
    removed, orphaned files (left by a failed or retried write before the erasure) that hold
    the code are removed, and table-wide column statistics that quote the code are recomputed
    from the live files. Readers that still hold an older snapshot lose it (no time travel to
    before an erasure). Returns counts of what was done, for the log."""
    done: dict[str, int] = {}

    def call(what: str, sql: str, params: list[Any] | None = None) -> int:
        n = retrying(what, lambda: len(conn.execute(sql, params or []).fetchall()))
        done[what] = n
        return n

    call("flushed", f"call ducklake_flush_inlined_data('{ALIAS}')")
    call("rewritten", f"call ducklake_rewrite_data_files('{ALIAS}', delete_threshold => 0)")
    call("snapshots_expired", f"call ducklake_expire_snapshots('{ALIAS}', older_than => now())")
    call("files_removed", f"call ducklake_cleanup_old_files('{ALIAS}', cleanup_all => true)")
    done["orphans_removed"] = _remove_orphans_with(conn, code, erased_before)
    done["stats_recomputed"] = _recompute_stats_quoting(conn, code)
    return done


def _remove_orphans_with(conn: duckdb.DuckDBPyConnection, code: str, erased_before: Any) -> int:
    """Delete orphaned data files (in the data path, in no snapshot) written before the erasure
    committed that hold `code` in any value. Only those: an orphan may also be a file another
    writer has written but not yet committed. A load of the erased client's clinic that was in
    flight conflicts with the erasure (clinic token) and is retried with new files, so its old
    files are true orphans; a write that starts after the erasure is newer than `erased_before`."""
    candidates = conn.execute(
        f"select path from ducklake_delete_orphaned_files('{ALIAS}', dry_run => true, "  # noqa: S608
        "older_than => ?)",
        [erased_before],
    ).fetchall()
    removed = 0
    for (path,) in candidates:
        if not str(path).endswith(".parquet") or str(path).endswith("-delete.parquet"):
            continue
        holds = conn.execute(
            "select count(*) from read_parquet(?) as r where contains(r::varchar, ?)",
            [str(path), code],
        ).fetchall()[0][0]
        if holds:
            Path(path).unlink(missing_ok=True)
            removed += 1
    return removed


def _recompute_stats_quoting(conn: duckdb.DuckDBPyConnection, code: str) -> int:
    """DuckLake keeps table-wide min/max per column in its catalog and only widens them, so an
    erased code can stay there as a bound. Recompute every such bound from the live files'
    statistics (numbers compared as numbers, everything else bytewise, as DuckDB does): still a
    valid lower/upper bound, now without the code. The code is matched here, in DuckDB; the
    statements sent to PostgreSQL name only table and column ids (nothing for its logs)."""
    schema = METADATA_SCHEMA
    quoting = conn.execute(
        "select distinct table_id, column_id from postgres_query('aw_pg', "  # noqa: S608
        f"'select table_id, column_id, min_value, max_value from {schema}.ducklake_table_column_stats') "
        "where contains(min_value, ?) or contains(max_value, ?)",
        [code, code],
    ).fetchall()
    if not quoting:
        return 0
    ids = ", ".join(f"({int(t)}, {int(c)})" for t, c in quoting)
    live = (
        f"from {schema}.ducklake_file_column_stats as f "
        f"join {schema}.ducklake_data_file as d using (data_file_id) "
        "where d.end_snapshot is null and f.table_id = s.table_id and f.column_id = s.column_id"
    )
    numeric = (
        f"exists (select 1 from {schema}.ducklake_column as c "  # noqa: S608 - constants
        "where c.table_id = s.table_id and c.column_id = s.column_id and c.end_snapshot is null "
        "and (c.column_type like 'int%' or c.column_type like 'uint%' "
        "or c.column_type like 'float%' or c.column_type like 'decimal%'))"
    )

    def bound(col: str, order: str, agg: str) -> str:
        return (
            f"(case when {numeric} then (select f.{col} {live} and f.{col} is not null "
            f"order by f.{col}::double precision {order} limit 1) "
            f'else (select {agg}(f.{col} collate "C") {live}) end)'
        )

    conn.execute(
        "call postgres_execute('aw_pg', ?)",
        [
            f"update {schema}.ducklake_table_column_stats as s set "  # noqa: S608 - ids only
            f"min_value = {bound('min_value', 'asc', 'min')}, "
            f"max_value = {bound('max_value', 'desc', 'max')} "
            f"where (s.table_id, s.column_id) in ({ids})"
        ],
    )
    return len(quoting)


class LakeBackend(EmbeddedBackend):
    """The warehouse as a DuckLake: what differs from the embedded file (no keys, sequences or
    non-literal defaults; several writers at once, kept apart by conflicts and retries)."""

    name = "ducklake"

    def __init__(self, settings: WarehouseSettings, path: Path | None = None) -> None:
        super().__init__(settings, None)

    def connect(
        self, read_only: bool = False, timeout_s: float | None = None
    ) -> duckdb.DuckDBPyConnection:
        return connect(read_only=read_only)

    def migrate(self, conn: duckdb.DuckDBPyConnection) -> list[str]:
        return migrate(conn)

    def exists(self) -> bool:
        return True  # the catalog is created on first use

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        return retrying(what, attempt)

    def reader(self, snapshot: Path) -> duckdb.DuckDBPyConnection | None:
        return connect(read_only=True)  # the lake serves readers during loads

    def readable(self, snapshot: Path) -> bool:
        return True

    def read_published(
        self, snapshot: Path, read: Callable[[duckdb.DuckDBPyConnection], T]
    ) -> T | None:
        """The lake itself (no writer slot to spare there; migrated, as a new lake needs)."""
        with self.open() as conn:
            return read(conn)

    def explain(self, error: BaseException, what: str) -> Exception | None:
        return catalog_unavailable(what) if is_catalog_lost(error) else None

    def publish_snapshot(self, snapshot: Path, per_clinic: bool | None = None) -> Path:
        """Nothing to copy: analysts read the lake itself (snapshot-isolated, concurrent with
        loads)."""
        return snapshot

    def erase(
        self, conn: duckdb.DuckDBPyConnection, erasure: Erasure
    ) -> tuple[int, dict[str, int]]:
        """Delete and audit in one transaction (retried on a conflict with another writer),
        then purge the deleted rows from the Parquet files."""
        erasure_id = next_erasure_id(conn)  # a sequence never rolls back anyway

        def once() -> tuple[dict[str, int], object]:
            with transaction(conn):
                # a load of this clinic in flight now conflicts and is retried after the erasure
                conn.execute(
                    "update clinic_load_tokens set loads = loads + 1 where clinic_id = ?",
                    [erasure.clinic_id],
                )
                removed = erasure.delete()
                conn.execute(
                    "insert into erasures (erasure_id, clinic_id, erased_at, rows_removed, "
                    "operator_note) values (?, ?, now(), ?, ?)",
                    [
                        erasure_id,
                        erasure.clinic_id,
                        json.dumps(removed, sort_keys=True),
                        erasure.operator_note,
                    ],
                )
            row = conn.execute("select now()").fetchone()
            assert row is not None
            return removed, row[0]

        removed, committed_at = retrying(f"erasure in clinic {erasure.clinic_id}", once)
        purge_erased(conn, erasure.client_id, committed_at)
        return erasure_id, removed

    def after_erasure(self, snapshot: Path | None) -> list[str]:
        return []  # purged already; no snapshot file to publish

    # --- the loader's steps

    def before_load(self, conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None:
        _claim_clinic(conn, clinic_id)

    def reserve_load_id(self, conn: duckdb.DuckDBPyConnection) -> int | None:
        # outside the transaction: a sequence never rolls back anyway
        return _next_load_id(conn)

    def load_id(self, conn: duckdb.DuckDBPyConnection, reserved: int | None) -> int:
        assert reserved is not None
        return reserved

    def serialize_clinic(self, conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None:
        # the conflicting write that serializes loads of one clinic (see the module docstring)
        conn.execute(
            "update clinic_load_tokens set loads = loads + 1 where clinic_id = ?", [clinic_id]
        )

    def attempt_copy(self, staged: StagedFile, result: FileResult) -> StagedFile:
        return _attempt_copy(staged, result)

    def load_appointments(
        self, conn: duckdb.DuckDBPyConnection, r: FileResult, src: str
    ) -> tuple[int, list[str]]:
        """A changed key is deleted and inserted again (no insert-or-replace on a lake)."""
        conn.execute("create or replace temp table batch as select * from read_parquet(?)", [src])
        key = "b.clinic_id = a.clinic_id and b.client_id = a.client_id "
        key += "and b.appointment_date = a.appointment_date"
        if conn.execute(
            f"select count(*) from appointments as a semi join batch as b on {key}"  # noqa: S608
        ).fetchall()[0][0]:
            conn.execute(
                f"delete from appointments as a where exists (select 1 from batch as b where {key})"  # noqa: S608
            )
        conn.execute(
            """
            insert into appointments
            select clinic_id, client_id, clinician_id, appointment_date, status,
                   ? as source_file, source_line, ? as sha256, ? as load_id
            from batch
            """,
            [r.file_name, r.sha256, r.load_id],
        )
        n = int(conn.execute("select count(*) from batch").fetchall()[0][0])
        clients = [
            c for (c,) in conn.execute("select distinct client_id from batch order by 1").fetchall()
        ]
        conn.execute("drop table batch")
        return n, clients

    def write_measurements(
        self, conn: duckdb.DuckDBPyConnection, r: FileResult, src: str, counts: dict[str, int]
    ) -> None:
        """A corrected key is deleted, then inserted again with the new rows."""
        if counts.get("changed"):
            conn.execute(
                f"""
                delete from measurements as m
                where exists (
                    select 1 from batch as b where b.change_kind = 'changed' and {KEY_JOIN})
                """  # noqa: S608
            )
        insert_measurements(conn, r, src, counts, include_changed=True)


def selected() -> bool:
    """Whether the settings select the DuckLake backend."""
    return warehouse_settings().backend == "ducklake"
