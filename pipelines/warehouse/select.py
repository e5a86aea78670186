"""Which backend: chosen once, from the settings or from an open connection. The only place
that tells the backends apart."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.settings import WarehouseSettings, warehouse_settings
from pipelines.warehouse.backend import Backend


def backend(path: Path | str | None = None, settings: WarehouseSettings | None = None) -> Backend:
    """The configured backend (`settings`, default: from the environment); `path` is the
    embedded warehouse file (a lake ignores it: its place is in the settings)."""
    s = warehouse_settings() if settings is None else settings
    if s.backend == "ducklake":
        from pipelines.warehouse.lake import LakeBackend

        return LakeBackend(s)
    from pipelines.warehouse.embedded import EmbeddedBackend

    return EmbeddedBackend(s, Path(path) if path is not None else None)


def backend_of(conn: duckdb.DuckDBPyConnection) -> Backend:
    """The backend an open connection works on (its current database is a lake, or not)."""
    row = conn.execute(
        "select type from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    s = warehouse_settings()
    if row is not None and row[0] == "ducklake":
        from pipelines.warehouse.lake import LakeBackend

        return LakeBackend(s if s.backend == "ducklake" else WarehouseSettings(backend="ducklake"))
    from pipelines.warehouse.embedded import EmbeddedBackend

    return EmbeddedBackend(WarehouseSettings(**{**vars(s), "backend": "embedded"}))
