"""Right to erasure: `alliance-watch forget --clinic C --client K` removes every trace of one
client from the warehouse and republishes the snapshots, and records that it did so in
`erasures` without the client code.

Every trace means: rows of every relation with (clinic_id, client_id) columns (measurements,
their history, appointments, flags, alert episodes, and any relation added later), quarantined
rows whose delivered values name the client, and the client in `loads.client_ids`. Deleted rows
can survive in a database file's free blocks, so the file is then rewritten (copied into a fresh
file that replaces it) and the analyst snapshots are republished from it. Digests already
written to the outbox that name the client are rendered again without the client (or removed
when nobody is left to report): `pipelines.deliver.digest.erase_from_outbox`.

How the deleted rows are made unrecoverable is the warehouse backend's part
(`Backend.erase`, `Backend.after_erasure`): the file is rewritten and its snapshots published
again, or the lake's data files are rewritten and its older snapshots expired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.answers.load import erase_refused
from pipelines.errors import AllianceWatchError
from pipelines.warehouse import Erasure, backend, open_warehouse


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
    """Erase one client of one clinic everywhere in the warehouse (one transaction) and make
    the deleted rows unrecoverable from its storage (the backend's part: for a warehouse file,
    the file is rewritten and `snapshot`, with its per-clinic copies, published again). Then
    the clinic's digests in `outbox` that name the client are rendered again from the
    warehouse with the clinic's config from `config_dir` (removed when that cannot be done),
    the client's episodes leave the immediate-notice ledger in `notices`, and their answers
    not loaded yet leave the answers inbox `answers`. Raises AllianceWatchError when the note
    names the client."""
    if operator_note and client_id in operator_note:
        raise AllianceWatchError(
            "--note must not contain the client code: the audit row would keep what was erased"
        )
    # the answers not loaded yet go first: a load after the erasure finds none of theirs
    inbox_removed = 0
    if answers is not None:
        from pipelines.answers.inbox import erase as erase_from_answers_inbox

        inbox_removed = erase_from_answers_inbox(answers, clinic_id, client_id)
    result = _forget_in_warehouse(warehouse, clinic_id, client_id, operator_note, snapshot)
    result.answers_inbox_removed = inbox_removed
    if outbox is not None and (outbox / clinic_id).is_dir():
        from pipelines.config import load_clinic_configs
        from pipelines.deliver.digest import erase_from_outbox

        configs = load_clinic_configs(config_dir)[0] if config_dir is not None else {}
        with open_warehouse(warehouse) as conn:
            done = erase_from_outbox(conn, outbox, configs, clinic_id, client_id)
        result.outbox_rendered_again = len(done.rendered_again)
        result.outbox_removed = len(done.removed)
    if notices is not None:
        from pipelines.deliver.alerts import erase_from_notices

        result.notices_removed = erase_from_notices(notices, clinic_id, client_id)
    return result


def _forget_in_warehouse(
    warehouse: Path,
    clinic_id: str,
    client_id: str,
    operator_note: str | None,
    snapshot: Path | None,
) -> ErasureResult:
    store = backend(warehouse)
    with store.open() as conn:
        erasure = Erasure(
            clinic_id, client_id, lambda: _delete_client(conn, clinic_id, client_id), operator_note
        )
        erasure_id, removed = store.erase(conn, erasure)
    result = ErasureResult(clinic_id, erasure_id, removed)
    # the file rewritten and its snapshots published again, where the backend keeps any
    result.snapshots = store.after_erasure(snapshot)
    return result
