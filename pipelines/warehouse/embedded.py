"""The embedded warehouse: one DuckDB file on this machine, the default backend.

DuckDB lets one process open a database file read-write, and then no other process may open it
at all. So every writer waits, with a bounded retry, for the file lock and then fails with a
clear `WarehouseBusy`; the Airflow DAGs also serialize writers in a pool of one slot. Analysts
read a snapshot (`publish_snapshot`), never the live file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from pipelines.errors import AllianceWatchError
from pipelines.warehouse.backend import Backend, Erasure, transaction
from pipelines.warehouse.batch import KEY_JOIN, insert_measurements
from pipelines.warehouse.files import connect_file
from pipelines.warehouse.records import FileResult, StagedFile
from pipelines.warehouse.schema import VALUE_COLUMNS, migrate_embedded
from pipelines.warehouse.snapshots import publish_file_snapshot

T = TypeVar("T")
log = logging.getLogger(__name__)


def engine(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB (no warehouse file attached): for queries over staged Parquet, or
    an in-memory warehouse (`migrate` it). `threads`: DuckDB's default when None."""
    return duckdb.connect(config={} if threads is None else {"threads": threads})


class EmbeddedBackend(Backend):
    """The warehouse as one DuckDB file (`path`): keys, sequences and defaults in the file;
    one writer at a time."""

    name = "embedded"

    def _file(self) -> Path:
        if self.path is None:
            raise AllianceWatchError("the embedded warehouse needs a file (--warehouse FILE)")
        return self.path

    def connect(
        self, read_only: bool = False, timeout_s: float | None = None
    ) -> duckdb.DuckDBPyConnection:
        return connect_file(self._file(), read_only=read_only, timeout_s=timeout_s)

    def migrate(self, conn: duckdb.DuckDBPyConnection) -> list[str]:
        applied = migrate_embedded(conn)
        if applied:
            # Fold the new schema into the file now. DuckDB 1.4 cannot replay a write-ahead log
            # that holds a fresh warehouse's schema followed by a load ("GetDefaultDatabase with
            # no default database set"), so a load killed in the same session would leave a file
            # that no longer opens (tests/e2e/test_exactly_once.py kills one there).
            conn.execute("checkpoint")
        return applied

    def exists(self) -> bool:
        return self._file().is_file()

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        return attempt()  # one writer at a time: nothing to conflict with

    def reader(self, snapshot: Path) -> duckdb.DuckDBPyConnection | None:
        if not snapshot.exists():
            return None
        return duckdb.connect(str(snapshot), read_only=True)

    def readable(self, snapshot: Path) -> bool:
        return snapshot.is_file()

    def read_published(
        self, snapshot: Path, read: Callable[[duckdb.DuckDBPyConnection], T]
    ) -> T | None:
        if snapshot.exists():
            try:
                with duckdb.connect(str(snapshot), read_only=True) as conn:
                    return read(conn)
            except duckdb.Error as e:
                log.warning(
                    "analyst snapshot unreadable (%s); reading the live warehouse", type(e).__name__
                )
        if not self.exists():
            return None
        with self.open(read_only=True) as conn:
            return read(conn)

    def publish_snapshot(self, snapshot: Path, per_clinic: bool | None = None) -> Path:
        return publish_file_snapshot(self._file(), snapshot, per_clinic)

    def erase(
        self, conn: duckdb.DuckDBPyConnection, erasure: Erasure
    ) -> tuple[int, dict[str, int]]:
        with transaction(conn):
            removed = erasure.delete()
            erasure_id = int(conn.execute("select nextval('erasure_id_seq')").fetchall()[0][0])
            conn.execute(
                "insert into erasures (erasure_id, clinic_id, rows_removed, operator_note) "
                "values (?, ?, ?, ?)",
                [
                    erasure_id,
                    erasure.clinic_id,
                    json.dumps(removed, sort_keys=True),
                    erasure.operator_note,
                ],
            )
        return erasure_id, removed

    def after_erasure(self, snapshot: Path | None) -> list[str]:
        """Deleted rows can survive in the file's free blocks: the file is rewritten, then the
        snapshot (and its per-clinic copies) published again from it."""
        self.rewrite()
        if snapshot is None:
            return []
        self.publish_snapshot(snapshot)
        return [str(snapshot)]

    def rewrite(self) -> None:
        """Copy the database into a fresh file and swap it in: free blocks of the old file
        (which may still hold deleted rows) are not carried over."""
        warehouse = self._file()
        tmp = warehouse.with_name(f".{warehouse.name}.rewrite-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        conn = self.connect()  # holds the writer lock while copying
        try:
            conn.execute("checkpoint")
            quoted = str(tmp).replace("'", "''")
            conn.execute(f"attach '{quoted}' as fresh")
            name = conn.execute("select current_database()").fetchall()[0][0]
            conn.execute(f'copy from database "{name}" to fresh')
            conn.execute("detach fresh")
            os.replace(tmp, warehouse)
        finally:
            conn.close()
        warehouse.with_name(warehouse.name + ".wal").unlink(missing_ok=True)
        with self.open():
            pass  # migrated

    # --- the loader's steps

    def before_load(self, conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None:
        return None

    def reserve_load_id(self, conn: duckdb.DuckDBPyConnection) -> int | None:
        return None  # taken in the file's transaction

    def load_id(self, conn: duckdb.DuckDBPyConnection, reserved: int | None) -> int:
        return int(conn.execute("select nextval('load_id_seq')").fetchall()[0][0])

    def serialize_clinic(self, conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None:
        return None  # the file lock already does

    def attempt_copy(self, staged: StagedFile, result: FileResult) -> StagedFile:
        # one attempt only: it may narrow the staged files in place
        return StagedFile(
            result, staged.valid_path, staged.quarantine_path, staged.keys_unique, staged.clients
        )

    def load_appointments(
        self, conn: duckdb.DuckDBPyConnection, r: FileResult, src: str
    ) -> tuple[int, list[str]]:
        conn.execute(
            """
            insert or replace into appointments
            select clinic_id, client_id, clinician_id, appointment_date, status,
                   ? as source_file, source_line, ? as sha256, ? as load_id
            from read_parquet(?)
            """,
            [r.file_name, r.sha256, r.load_id, src],
        )
        n = conn.execute("select count(*) from read_parquet(?)", [src]).fetchall()[0][0]
        clients = [
            c
            for (c,) in conn.execute(
                "select distinct client_id from read_parquet(?) order by 1", [src]
            ).fetchall()
        ]
        return int(n), clients

    def write_measurements(
        self, conn: duckdb.DuckDBPyConnection, r: FileResult, src: str, counts: dict[str, int]
    ) -> None:
        """New keys: a plain insert; corrected keys: the current row's values updated in place."""
        insert_measurements(conn, r, src, counts)
        updates = ", ".join(f"{c} = b.{c}" for c in VALUE_COLUMNS)
        conn.execute(
            f"""
            update measurements as m
            set {updates}, source_file = ?, source_line = b.source_line, sha256 = ?,
                load_id = ?, loaded_at = now()
            from batch as b
            where b.change_kind = 'changed' and {KEY_JOIN}
            """,  # noqa: S608
            [r.file_name, r.sha256, r.load_id],
        )
