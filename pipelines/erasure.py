"""Right to erasure: `alliance-watch forget --clinic C --client K` removes every trace of one
client from the warehouse and republishes the snapshots, and records that it did so in
`erasures` without the client code.

Every trace means: rows of every relation with (clinic_id, client_id) columns (measurements,
their history, appointments, flags, alert episodes, and any relation added later), quarantined
rows whose delivered values name the client, and the client in `loads.client_ids`. Deleted rows
can survive in a database file's free blocks, so the file is then rewritten (copied into a fresh
file that replaces it) and the analyst snapshots are republished from it. Digests already
written to the outbox that name the client are rendered again without the client (or removed
when nobody is left to report): `pipelines.digest.erase_from_outbox`.

On a DuckLake warehouse (`pipelines.ducklake`, selected by configuration) the same rows are
deleted in one transaction, which also takes the clinic's load token so that a load of the
clinic in flight is retried after it; the erasure id comes from a sequence in the catalog
database; then `pipelines.ducklake.purge_erased` rewrites the data files, expires the older
snapshots and removes their files, so no Parquet file keeps the client. There is no snapshot
file to republish: analysts read the lake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.answers_load import erase_refused
from pipelines.errors import AllianceWatchError
from pipelines.settings import paths_from_env
from pipelines.warehouse import connect, migrate, open_warehouse, publish_snapshot


@dataclass
class ErasureResult:
    """What one erasure removed, per relation (no client code in here)."""

    clinic_id: str
    erasure_id: int
    rows_removed: dict[str, int] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)
    outbox_rendered_again: int = 0  # digests in the outbox that named the client
    outbox_removed: int = 0
    notices_removed: int = 0  # announced episodes in the immediate-notice ledger
    answers_inbox_removed: int = 0  # clinicians' answers not loaded yet

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
            where table_catalog = current_database() and table_schema = 'main'
              and column_name in ('clinic_id', 'client_id')
              and table_name in (
                  select table_name from information_schema.tables
                  where table_type = 'BASE TABLE' and table_catalog = current_database()
                    and table_schema = 'main')
            group by table_name
            having count(distinct column_name) = 2
            order by table_name
            """
        ).fetchall()
    ]


def _delete_client(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, client_id: str
) -> dict[str, int]:
    """Delete every row of the client (inside the caller's transaction); rows per relation."""
    removed: dict[str, int] = {}
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
    removed["alert_feedback_refused"] = erase_refused(conn, clinic_id, client_id)
    removed["loads.client_ids"] = int(
        conn.execute(
            """
            update loads set client_ids = list_filter(client_ids, c -> c <> ?)
            where clinic_id = ? and list_contains(client_ids, ?)
            """,
            [client_id, clinic_id, client_id],
        ).fetchall()[0][0]
    )
    return removed


def _forget_in_lake(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, client_id: str, operator_note: str | None
) -> ErasureResult:
    """`forget` on a DuckLake warehouse: delete and audit in one transaction (retried on a
    conflict with another writer), then purge the deleted rows from the Parquet files."""
    from pipelines import ducklake

    erasure_id = ducklake.next_erasure_id(conn)  # a sequence never rolls back anyway

    def once() -> tuple[dict[str, int], object]:
        conn.execute("begin transaction")
        try:
            # a load of this clinic in flight now conflicts and is retried after the erasure
            conn.execute(
                "update clinic_load_tokens set loads = loads + 1 where clinic_id = ?", [clinic_id]
            )
            removed = _delete_client(conn, clinic_id, client_id)
            conn.execute(
                "insert into erasures (erasure_id, clinic_id, erased_at, rows_removed, "
                "operator_note) values (?, ?, now(), ?, ?)",
                [erasure_id, clinic_id, json.dumps(removed, sort_keys=True), operator_note],
            )
            conn.execute("commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                conn.execute("rollback")
            raise
        row = conn.execute("select now()").fetchone()
        assert row is not None
        return removed, row[0]

    removed, committed_at = ducklake.retrying(f"erasure in clinic {clinic_id}", once)
    ducklake.purge_erased(conn, client_id, committed_at)
    return ErasureResult(clinic_id, erasure_id, removed)


def forget(
    warehouse: Path,
    clinic_id: str,
    client_id: str,
    operator_note: str | None = None,
    snapshot: Path | None = None,
    outbox: Path | None = None,
    config_dir: Path | None = None,
    notices: Path | None = None,
    answers: Path | None = None,
) -> ErasureResult:
    """Erase one client of one clinic everywhere in the warehouse (one transaction), rewrite the
    file so no deleted block keeps the data, republish `snapshot` (and its per-clinic copies if
    they exist). On a DuckLake warehouse (configuration; `warehouse` and `snapshot` are not
    used) the lake's files are purged instead. Then the clinic's digests in `outbox` that name
    the client are rendered again from the warehouse with the clinic's config from
    `config_dir` (removed when that cannot be done), and the client's episodes leave the
    immediate-notice ledger in `notices`, and their answers not loaded yet leave the answers
    inbox `answers`. Raises AllianceWatchError when the note names the
    client."""
    if operator_note and client_id in operator_note:
        raise AllianceWatchError(
            "--note must not contain the client code: the audit row would keep what was erased"
        )
    # the answers not loaded yet go first: a load after the erasure finds none of theirs
    inbox_removed = 0
    if answers is not None:
        from pipelines.answers_inbox import erase as erase_from_answers_inbox

        inbox_removed = erase_from_answers_inbox(answers, clinic_id, client_id)
    result = _forget_in_warehouse(warehouse, clinic_id, client_id, operator_note, snapshot)
    result.answers_inbox_removed = inbox_removed
    if outbox is not None and (outbox / clinic_id).is_dir():
        from pipelines.config import load_clinic_configs
        from pipelines.digest import erase_from_outbox

        configs = load_clinic_configs(config_dir)[0] if config_dir is not None else {}
        with open_warehouse(warehouse) as conn:
            done = erase_from_outbox(conn, outbox, configs, clinic_id, client_id)
        result.outbox_rendered_again = len(done.rendered_again)
        result.outbox_removed = len(done.removed)
    if notices is not None:
        from pipelines.alerts import erase_from_notices

        result.notices_removed = erase_from_notices(notices, clinic_id, client_id)
    return result


def _forget_in_warehouse(
    warehouse: Path,
    clinic_id: str,
    client_id: str,
    operator_note: str | None,
    snapshot: Path | None,
) -> ErasureResult:
    with open_warehouse(warehouse) as conn:
        from pipelines import ducklake

        if ducklake.is_lake(conn):
            return _forget_in_lake(conn, clinic_id, client_id, operator_note)
        conn.execute("begin transaction")
        try:
            removed = _delete_client(conn, clinic_id, client_id)
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
        publish_snapshot(warehouse, snapshot)  # and the per-clinic copies where there are any
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


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def default_snapshot(warehouse: Path) -> Path:
    """The analyst snapshot that belongs to a warehouse file: beside it, as under
    ALLIANCE_WATCH_HOME (`warehouse/alliance.duckdb` -> `warehouse/snapshot/...`)."""
    return warehouse.resolve().parent / "snapshot" / "alliance_snapshot.duckdb"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--warehouse",
        type=Path,
        required=True,
        help="DuckDB warehouse file (not used when configuration selects DuckLake)",
    )
    p.add_argument("--clinic", required=True, help="clinic_id")
    p.add_argument("--client", required=True, help="the client code to erase")
    p.add_argument("--note", default=None, help="operator note for the audit (not the code)")
    p.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="analyst snapshot to republish afterwards (default, when it exists: the "
        "configured one (ALLIANCE_WATCH_SNAPSHOT or under ALLIANCE_WATCH_HOME) if --warehouse "
        "is the configured warehouse, else snapshot/alliance_snapshot.duckdb beside --warehouse)",
    )
    p.add_argument(
        "--outbox",
        type=Path,
        default=None,
        help="digest outbox whose digests naming the client are rendered again without them "
        "(default: ALLIANCE_WATCH_OUTBOX, or ALLIANCE_WATCH_HOME/outbox, when it exists and "
        "--warehouse is the configured warehouse)",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="clinic configs, to render those digests (default: ALLIANCE_WATCH_CONFIG_DIR, or "
        "ALLIANCE_WATCH_HOME/config, for the configured warehouse); without the clinic's "
        "config they are removed instead",
    )


def run(args: argparse.Namespace) -> int:
    from pipelines import ducklake

    if not ducklake.selected() and not args.warehouse.is_file():
        raise AllianceWatchError(f"--warehouse {args.warehouse}: no such file")
    from pipelines.alerts import notices_dir

    paths = paths_from_env()
    # The installation's defaults (ALLIANCE_WATCH_*) belong to its own warehouse: for another
    # warehouse file they would republish the installation's snapshot with that file's rows
    # and render its digests again from them. Then the snapshot beside the warehouse given
    # (the same layout: <folder>/snapshot/alliance_snapshot.duckdb) is the default, and the
    # outbox, configs and notice ledger are used only when named.
    own = _same_file(args.warehouse, paths.warehouse)
    outbox = args.outbox if args.outbox is not None else (paths.outbox if own else None)
    if args.outbox is not None and not args.outbox.is_dir():
        raise AllianceWatchError(f"--outbox {args.outbox}: no such folder")
    config_dir = args.config_dir if args.config_dir is not None else paths.config_dir
    if args.config_dir is None and not own:
        config_dir = None
    # the snapshot is republished whether named or not: immediate notices read it, and would
    # otherwise announce the erased client's episodes again
    snapshot = args.snapshot
    if snapshot is None:
        snapshot = paths.snapshot if own else default_snapshot(args.warehouse)
    r = forget(
        args.warehouse,
        args.clinic,
        args.client,
        args.note,
        snapshot if args.snapshot is not None or snapshot.exists() else None,
        outbox if outbox is not None and outbox.is_dir() else None,
        config_dir if config_dir is not None and config_dir.is_dir() else None,
        notices_dir(paths) if own else None,
        paths.answers if own else None,
    )
    parts = ", ".join(f"{k} {v}" for k, v in sorted(r.rows_removed.items()) if v)
    print(
        f"erased one client of {r.clinic_id}: {r.total} rows ({parts or 'none found'}); "
        f"audit erasure_id {r.erasure_id}"
    )
    if outbox is not None and outbox.is_dir():
        print(
            f"outbox {outbox}: of the digests that named the client, "
            f"{r.outbox_rendered_again} rendered again without them, {r.outbox_removed} removed"
        )
    if r.answers_inbox_removed:
        print(
            f"answers inbox: {r.answers_inbox_removed} answers of the client not loaded yet removed"
        )
    if r.notices_removed:
        print(
            f"immediate-notice ledger: {r.notices_removed} announced episodes of the client removed"
        )
    return 0
