"""The pending-detection ledger: which clients' flags may be out of date.

Every load queues the clients it touched in `detection_pending`, in the same transaction as
their rows (`pipelines.warehouse.record_quarantine_and_load`, both backends). Detection drains
the ledger: it reads every pending row, recomputes those clients, and afterwards deletes exactly
the rows it read, so a load that commits in between stays queued for the next run. A crash
between the recompute and the delete only repeats work (detection replaces a client's rows, it
never adds to them). Whatever woke detection up (an Airflow asset event, a manual run, the CLI)
does not say whom to detect: the ledger does, so a wake-up that is lost or merged with another
loses no load.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.detect.ruptures import DetectParams, DetectSummary, detect
from pipelines.warehouse import retrying


@dataclass(frozen=True)
class Pending:
    """Rows read from `detection_pending`: (clinic_id, client_id, load_id) each."""

    rows: tuple[tuple[str, str, int], ...] = ()

    @property
    def clients(self) -> list[tuple[str, str]]:
        """The distinct (clinic_id, client_id) pairs, sorted."""
        return sorted({(clinic, client) for clinic, client, _ in self.rows})

    def __bool__(self) -> bool:
        return bool(self.rows)


def read(conn: duckdb.DuckDBPyConnection) -> Pending:
    """Everything pending now."""
    rows = conn.execute(
        "select clinic_id, client_id, load_id from detection_pending order by all"
    ).fetchall()
    return Pending(tuple((str(c), str(k), int(n)) for c, k, n in rows))


def clear(conn: duckdb.DuckDBPyConnection, pending: Pending) -> int:
    """Delete exactly the rows of `pending` (rows queued since it was read stay), in one
    statement (retried on a conflict with another writer, where the warehouse has several); returns the
    rows deleted."""
    if not pending:
        return 0
    done = pa.table(
        {
            "clinic_id": pa.array([r[0] for r in pending.rows], pa.string()),
            "client_id": pa.array([r[1] for r in pending.rows], pa.string()),
            "load_id": pa.array([r[2] for r in pending.rows], pa.int64()),
        }
    )

    def once() -> int:  # one statement: its own transaction
        row = conn.execute(
            "delete from detection_pending as p where exists (select 1 from detection_done "
            "as d where d.clinic_id = p.clinic_id and d.client_id = p.client_id "
            "and d.load_id = p.load_id)"
        ).fetchone()
        return int(row[0]) if row else 0

    conn.register("detection_done", done)
    try:
        return retrying(conn, "clearing detected clients", once)
    finally:
        conn.unregister("detection_done")


def detect_all(
    conn: duckdb.DuckDBPyConnection, clinic_params: dict[str, DetectParams] | None = None
) -> DetectSummary:
    """A full recompute (`alliance-watch detect`): every client, and the ledger cleared of what
    was pending when it began."""
    pending = read(conn)
    summary = detect(conn, clinic_params=clinic_params)
    clear(conn, pending)
    return summary
