"""The warehouse: the one seam to the backends, and the only package that opens DuckDB.

One `Backend` is chosen once, from the settings (`backend`) or from an open connection
(`backend_of`): the embedded DuckDB file (`embedded`, the default) or DuckLake (`lake`, which
extends it where the two differ). Every backend holds the relations of sql/schema/ (the lake
form is generated from them: `lake_ddl`), loads through the one loader (`load`) and publishes
what analysts read (`snapshots`). The functions below are what the rest of Alliance Watch calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import duckdb

from pipelines.warehouse.backend import Backend, Erasure, transaction
from pipelines.warehouse.batch import FILE_KEY
from pipelines.warehouse.embedded import engine
from pipelines.warehouse.load import (
    PriorVerdict,
    clients_of_earlier_load,
    known_hashes,
    load_staged,
    prior_verdict,
    record_clinic_settings,
)
from pipelines.warehouse.records import (
    CHANGED_AFTER_DISCOVERY,
    INTERNAL_ERROR,
    NOT_JUDGED,
    STAGE_FULL,
    UNREADABLE,
    FileResult,
    StagedFile,
    parquet_source,
    remove_staged,
    split_code,
)
from pipelines.warehouse.schema import (
    MEASURE_KEY,
    VALUE_COLUMNS,
    create_views,
    sql_dir,
    sql_text,
    table_columns,
    view_files,
)
from pipelines.warehouse.select import backend, backend_of
from pipelines.warehouse.snapshots import clinic_snapshots_wanted, publish_clinic_snapshots

T = TypeVar("T")

__all__ = [
    "CHANGED_AFTER_DISCOVERY",
    "FILE_KEY",
    "INTERNAL_ERROR",
    "MEASURE_KEY",
    "NOT_JUDGED",
    "STAGE_FULL",
    "UNREADABLE",
    "VALUE_COLUMNS",
    "Backend",
    "Erasure",
    "FileResult",
    "PriorVerdict",
    "StagedFile",
    "backend",
    "backend_of",
    "clients_of_earlier_load",
    "clinic_snapshots_wanted",
    "connect",
    "create_views",
    "engine",
    "known_hashes",
    "load_staged",
    "migrate",
    "open_warehouse",
    "parquet_source",
    "prior_verdict",
    "publish_clinic_snapshots",
    "publish_snapshot",
    "record_clinic_settings",
    "remove_staged",
    "retrying",
    "split_code",
    "sql_dir",
    "sql_text",
    "table_columns",
    "transaction",
    "view_files",
]


def connect(
    path: Path | str, read_only: bool = False, timeout_s: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the configured warehouse (`path`: the embedded file); a writer waits up to
    `timeout_s` for its turn, then WarehouseBusy."""
    return backend(path).connect(read_only=read_only, timeout_s=timeout_s)


@contextlib.contextmanager
def open_warehouse(
    path: Path | str, read_only: bool = False, timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """connect() + migrate() (for writers), closed on exit."""
    with backend(path).open(read_only=read_only, timeout_s=timeout_s) as conn:
        yield conn


def migrate(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Bring the warehouse behind `conn` up to date; the versions applied."""
    return backend_of(conn).migrate(conn)


def retrying(conn: duckdb.DuckDBPyConnection, what: str, attempt: Callable[[], T]) -> T:
    """Run `attempt()` (one whole transaction on `conn`), again while it conflicts with other
    writers where the backend lets several write at once."""
    return backend_of(conn).retrying(what, attempt)


def publish_snapshot(warehouse: Path, snapshot: Path, per_clinic: bool | None = None) -> Path:
    """Publish what analysts read: a copy of the (closed) warehouse file at `snapshot`,
    atomically (with `per_clinic`, default `clinic_snapshots_wanted`, also one file per clinic
    beside it); nothing on a lake, which analysts read directly. Call it while holding the
    writer's turn and with no open connection to `warehouse`."""
    return backend(warehouse).publish_snapshot(snapshot, per_clinic)
