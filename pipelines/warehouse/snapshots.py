"""The analyst snapshots of the embedded warehouse file: a copy of the closed file, published
atomically, and optionally one file per clinic."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from pipelines.settings import warehouse_settings
from pipelines.warehouse.files import connect_file
from pipelines.warehouse.schema import create_views


def clinic_snapshots_wanted(snapshot: Path) -> bool:
    """Per-clinic snapshots are on when ALLIANCE_WATCH_CLINIC_SNAPSHOTS is set (1/true/yes),
    and stay on once their folder exists beside the snapshot."""
    return warehouse_settings().clinic_snapshots or (snapshot.parent / "clinics").is_dir()


def publish_file_snapshot(warehouse: Path, snapshot: Path, per_clinic: bool | None = None) -> Path:
    """Copy the (closed) warehouse to `snapshot` atomically: readers see old or new, never half.

    An analyst may hold the old snapshot open meanwhile: `os.replace` swaps the name, the open
    file lives on until its reader lets go. With `per_clinic` (default: when
    `clinic_snapshots_wanted`), also write ``<snapshot folder>/clinics/<clinic_id>.duckdb``
    holding only that clinic's rows.
    Call it while holding the writer slot and with no open connection to `warehouse`.
    """
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = snapshot.with_name(f".{snapshot.name}.tmp-{os.getpid()}")
    # the connection holds the file's lock until the copy is done: a writer in another
    # process (a CLI run beside the Airflow pool) waits instead of tearing the copy
    conn = connect_file(warehouse)
    try:
        conn.execute("checkpoint")
        try:
            shutil.copyfile(warehouse, tmp)
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        conn.close()
    os.replace(tmp, snapshot)
    if per_clinic if per_clinic is not None else clinic_snapshots_wanted(snapshot):
        # from the copy just published, which no writer touches
        publish_clinic_snapshots(snapshot, snapshot.parent / "clinics")
    return snapshot


def publish_clinic_snapshots(warehouse: Path, out_dir: Path) -> dict[str, Path]:
    """One DuckDB file per clinic with only that clinic's rows (every table with a clinic_id
    column is filtered; reference tables such as `instruments` are copied whole) and the
    analyst views; each published atomically. Returns clinic_id -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    src = connect_file(warehouse, read_only=True)
    try:
        clinics = [
            c
            for (c,) in src.execute(
                "select distinct clinic_id from ingest_files order by 1"
            ).fetchall()
        ]
        tables = src.execute(
            """
            select t.table_name, bool_or(c.column_name = 'clinic_id') as has_clinic
            from information_schema.tables as t
            inner join information_schema.columns as c using (table_schema, table_name)
            where t.table_type = 'BASE TABLE' and t.table_schema = 'main'
            group by t.table_name order by 1
            """
        ).fetchall()
    finally:
        src.close()
    out: dict[str, Path] = {}
    for clinic in clinics:
        target = out_dir / f"{clinic}.duckdb"
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        conn = duckdb.connect(str(tmp))
        try:
            quoted = str(warehouse).replace("'", "''")
            conn.execute(f"attach '{quoted}' as src (read_only)")
            for name, has_clinic in tables:
                where = " where clinic_id = $clinic" if has_clinic else ""
                conn.execute(
                    f'create table "{name}" as select * from src."{name}"{where}',  # noqa: S608
                    {"clinic": clinic} if has_clinic else {},
                )
            conn.execute("detach src")
            create_views(conn)
            conn.execute("checkpoint")
        finally:
            conn.close()
        os.replace(tmp, target)
        out[clinic] = target
    return out
