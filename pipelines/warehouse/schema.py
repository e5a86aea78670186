"""The warehouse relations: sql/schema/ migrations (the embedded file's), the instrument
registry, the analyst views of sql/views/ and the SQL text of a relation."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines import registry
from pipelines.settings import warehouse_settings
from pipelines.warehouse.backend import transaction

MEASURE_KEY = ("clinic_id", "client_id", "episode_id", "session_number", "instrument")
VALUE_COLUMNS = (
    "clinician_id",
    "session_date",
    "instrument_version",
    *registry.ITEM_COLUMNS,
    "total",
)


def sql_dir() -> Path:
    """The folder of the SQL files (ALLIANCE_WATCH_SQL_DIR, else the project's sql/)."""
    return warehouse_settings().sql_dir


def sql_text(relative: str) -> str:
    """The text of a file under sql/ (e.g. ``detect/flags.sql``)."""
    return (sql_dir() / relative).read_text(encoding="utf-8")


def migration_files() -> list[Path]:
    """sql/schema/*.sql in the order they apply."""
    return sorted((sql_dir() / "schema").glob("*.sql"))


def table_columns(table: str) -> tuple[str, ...]:
    """The columns of `table` as the migrations of sql/schema/ leave it, in their order."""
    columns = _migrated_columns().get(table)
    if columns is None:
        raise KeyError(f"sql/schema/ creates no table {table!r}")
    return columns


@functools.cache
def _migrated_columns() -> dict[str, tuple[str, ...]]:
    """Every table's columns after the migrations, applied to an in-memory DuckDB (once per
    process)."""
    conn = duckdb.connect()
    try:
        for f in migration_files():
            conn.execute(f.read_text(encoding="utf-8"))
        rows = conn.execute(
            "select table_name, column_name from duckdb_columns() "
            "where schema_name = 'main' order by table_name, column_index"
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return {t: tuple(c) for t, c in out.items()}


def migrate_embedded(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every sql/schema/*.sql not yet applied, in order, then the registry and the views;
    return the versions applied."""
    conn.execute(
        "create table if not exists schema_migrations ("
        " version varchar primary key, applied_at timestamptz default now())"
    )
    done = {r[0] for r in conn.execute("select version from schema_migrations").fetchall()}
    applied: list[str] = []
    for f in migration_files():
        if f.stem in done:
            continue
        with transaction(conn):
            conn.execute(f.read_text(encoding="utf-8"))
            conn.execute("insert into schema_migrations (version) values (?)", [f.stem])
        applied.append(f.stem)
    if applied or not done:
        load_registry(conn)
    create_views(conn)
    return applied


def create_views(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """(Re)create every analyst view in sql/views/*.sql, so a changed view file takes effect
    on the next open; return the view names. Each file is one ``create or replace view``."""
    names: list[str] = []
    for f in view_files():
        conn.execute(f.read_text(encoding="utf-8"))
        names.append(f.stem)
    return names


def view_files() -> list[Path]:
    """sql/views/*.sql in an order that creates every view after the views it reads (a view
    reads another when its text names it); by name otherwise."""
    files = {f.stem: f for f in sorted((sql_dir() / "views").glob("*.sql"))}
    code = {  # comments may name any relation: only the SQL counts
        name: re.sub(r"--[^\n]*", "", f.read_text(encoding="utf-8")) for name, f in files.items()
    }
    reads = {
        name: {other for other in files if other != name and re.search(rf"\b{other}\b", text)}
        for name, text in code.items()
    }
    ordered: list[Path] = []
    done: set[str] = set()
    while len(done) < len(files):
        ready = [n for n in files if n not in done and reads[n] <= done]
        if not ready:
            raise RuntimeError(f"views read each other in a cycle: {sorted(set(files) - done)}")
        for name in ready:
            ordered.append(files[name])
            done.add(name)
    return ordered


def load_registry(conn: duckdb.DuckDBPyConnection) -> None:
    """Write the instrument registry into `instruments` (replacing what was there)."""
    rows = pa.Table.from_pylist(registry.registry_table())
    conn.register("registry_rows", rows)
    conn.execute("delete from instruments")
    conn.execute("insert into instruments by name select * from registry_rows")
    conn.unregister("registry_rows")
