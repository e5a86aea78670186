"""Right to erasure: `alliance-watch forget --clinic C --client K` removes every trace of one
client from the warehouse and republishes the snapshots, and records that it did so in
`erasures` without the client code.

Every trace means: rows of every relation with (clinic_id, client_id) columns (measurements,
their history, appointments, flags, alert episodes, and any relation added later), quarantined
rows whose delivered values name the client, and the client in `loads.client_ids`. Deleted rows
can survive in a database file's free blocks, so the file is then rewritten (copied into a fresh
file that replaces it) and the analyst snapshots are republished from it.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.errors import AllianceWatchError
from pipelines.warehouse import connect, migrate, open_warehouse, publish_snapshot


@dataclass
class ErasureResult:
    """What one erasure removed, per relation (no client code in here)."""

    clinic_id: str
    erasure_id: int
    rows_removed: dict[str, int] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows_removed.values())


def _client_tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Base tables that carry both clinic_id and client_id columns."""
    return [
        t
        for (t,) in conn.execute(
            """
            select table_name
            from information_schema.columns
            where table_schema = 'main' and column_name in ('clinic_id', 'client_id')
              and table_name in (
                  select table_name from information_schema.tables
                  where table_type = 'BASE TABLE')
            group by table_name
            having count(distinct column_name) = 2
            order by table_name
            """
        ).fetchall()
    ]


def forget(
    warehouse: Path,
    clinic_id: str,
    client_id: str,
    operator_note: str | None = None,
    snapshot: Path | None = None,
) -> ErasureResult:
    """Erase one client of one clinic everywhere in the warehouse (one transaction), rewrite the
    file so no deleted block keeps the data, republish `snapshot` (and its per-clinic copies if
    they exist). Raises AllianceWatchError when the note names the client."""
    if operator_note and client_id in operator_note:
        raise AllianceWatchError(
            "--note must not contain the client code: the audit row would keep what was erased"
        )
    removed: dict[str, int] = {}
    with open_warehouse(warehouse) as conn:
        conn.execute("begin transaction")
        try:
            for table in _client_tables(conn):
                n = conn.execute(
                    f'delete from "{table}" where clinic_id = ? and client_id = ?',  # noqa: S608
                    [clinic_id, client_id],
                ).fetchall()[0][0]
                removed[table] = int(n)
            # quarantined rows are kept as delivered: any delivered value equal to the code
            removed["quarantined_rows"] = int(
                conn.execute(
                    """
                    delete from quarantined_rows
                    where clinic_id = ?
                      and list_contains(json_extract_string(row_data, '$.*'), ?)
                    """,
                    [clinic_id, client_id],
                ).fetchall()[0][0]
            )
            removed["loads.client_ids"] = int(
                conn.execute(
                    """
                    update loads set client_ids = list_filter(client_ids, c -> c <> ?)
                    where clinic_id = ? and list_contains(client_ids, ?)
                    """,
                    [client_id, clinic_id, client_id],
                ).fetchall()[0][0]
            )
            erasure_id = int(conn.execute("select nextval('erasure_id_seq')").fetchall()[0][0])
            conn.execute(
                "insert into erasures (erasure_id, clinic_id, rows_removed, operator_note) "
                "values (?, ?, ?, ?)",
                [erasure_id, clinic_id, json.dumps(removed, sort_keys=True), operator_note],
            )
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
    rewrite(warehouse)
    result = ErasureResult(clinic_id, erasure_id, removed)
    if snapshot is not None:
        per_clinic = (snapshot.parent / "clinics").is_dir()
        publish_snapshot(warehouse, snapshot, per_clinic=per_clinic)
        result.snapshots.append(str(snapshot))
    return result


def rewrite(warehouse: Path) -> None:
    """Copy the database into a fresh file and swap it in: free blocks of the old file (which
    may still hold deleted rows) are not carried over."""
    tmp = warehouse.with_name(f".{warehouse.name}.rewrite-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    conn = connect(warehouse)  # holds the writer lock while copying
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
    wal = warehouse.with_name(warehouse.name + ".wal")
    wal.unlink(missing_ok=True)
    with open_warehouse(warehouse) as fresh:
        migrate(fresh)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file")
    p.add_argument("--clinic", required=True, help="clinic_id")
    p.add_argument("--client", required=True, help="the client code to erase")
    p.add_argument("--note", default=None, help="operator note for the audit (not the code)")
    p.add_argument(
        "--snapshot", type=Path, default=None, help="analyst snapshot to republish afterwards"
    )


def run(args: argparse.Namespace) -> int:
    if not args.warehouse.is_file():
        raise AllianceWatchError(f"--warehouse {args.warehouse}: no such file")
    r = forget(args.warehouse, args.clinic, args.client, args.note, args.snapshot)
    parts = ", ".join(f"{k} {v}" for k, v in sorted(r.rows_removed.items()) if v)
    print(
        f"erased one client of {r.clinic_id}: {r.total} rows ({parts or 'none found'}); "
        f"audit erasure_id {r.erasure_id}"
    )
    return 0
