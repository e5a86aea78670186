"""The digest delivery journal: exactly once without the warehouse's writer slot.

A digest run renders from a read-only source (the analyst snapshot, or the lake) and may run
one process per clinic, so it cannot write `digest_deliveries` as it sends. Each clinic's week
has a journal instead, beside its outbox files: `OUT/<clinic_id>/<week_start>/_deliveries.jsonl`,
one JSON line per ledger change (the `failed: interrupted` mark before a send, the outcome
after it), flushed and fsynced before the run goes on. A run holds an exclusive `flock` on the
journal while it delivers that clinic's week, so two runs of the same week (the timezone DAG and
a run by hand) take turns instead of both sending; the kernel drops the lock of a process that
dies, so a killed run never blocks the next.

What a digest's state is: its journal's entries and the warehouse ledger's row together, and a
`sent` in either is final. `record` mirrors the journals into `digest_deliveries` (one short
transaction; the Airflow DAG's only task in the writer pool), so analysts and `alliance-watch
forget` see the same ledger as before. The journal holds no address and no client code:
clinician codes, statuses, SMTP error codes, counts.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO

import duckdb
import pandas as pd

JOURNAL = "_deliveries.jsonl"
KEY = ("clinic_id", "clinician_id", "week_start", "kind")


@dataclass(frozen=True)
class Entry:
    """One ledger state of one digest (the columns of `digest_deliveries`)."""

    clinic_id: str
    clinician_id: str  # '' for the data-team summary
    week_start: dt.date
    kind: str  # clinician | data_team
    status: str  # sent | failed | written
    attempts: int
    error: str | None = None
    sent_at: dt.datetime | None = None
    message_id: str | None = None
    outbox_path: str | None = None
    n_clients: int = 0

    @property
    def key(self) -> tuple[str, str, dt.date, str]:
        return (self.clinic_id, self.clinician_id, self.week_start, self.kind)

    def line(self) -> str:
        d = asdict(self)
        d["week_start"] = self.week_start.isoformat()
        d["sent_at"] = self.sent_at.isoformat() if self.sent_at else None
        return json.dumps(d, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, text: str) -> Entry:
        d = json.loads(text)
        d["week_start"] = dt.date.fromisoformat(d["week_start"])
        d["sent_at"] = dt.datetime.fromisoformat(d["sent_at"]) if d.get("sent_at") else None
        return cls(**d)


def merge(a: Entry | None, b: Entry | None) -> Entry | None:
    """The state of a digest from two records of it: a `sent` wins (never send twice), else
    the later (`b`); attempts are the larger count (each record counts every earlier one)."""
    if a is None or b is None:
        return a or b
    if a.status == "sent" and b.status != "sent":
        return a
    if b.status == "sent" and a.status != "sent":
        return b
    return replace(b, attempts=max(a.attempts, b.attempts))


def _latest(lines: Iterable[str]) -> dict[tuple[str, str, dt.date, str], Entry]:
    out: dict[tuple[str, str, dt.date, str], Entry] = {}
    for text in lines:
        if not text.strip():
            continue
        try:
            e = Entry.parse(text)
        except (ValueError, TypeError, KeyError):
            continue  # a line torn by a crash mid-write: the entry before it stands
        merged = merge(out.get(e.key), e)
        assert merged is not None
        out[e.key] = merged
    return out


class Journal:
    """The journal of one clinic's week, locked for this run while open (a context manager)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL
        self._fh: IO[str] | None = None
        self.entries: dict[tuple[str, str, dt.date, str], Entry] = {}

    def __enter__(self) -> Journal:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # another run of this week waits here
        fh.seek(0)
        self.entries = _latest(fh.read().splitlines())
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def get(self, key: tuple[str, str, dt.date, str]) -> Entry | None:
        return self.entries.get(key)

    def append(self, entry: Entry) -> None:
        """Write the entry durably (flush + fsync) before returning."""
        assert self._fh is not None, "open the journal first"
        self._fh.write(entry.line())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        merged = merge(self.entries.get(entry.key), entry)
        assert merged is not None
        self.entries[entry.key] = merged


def read_journals(
    out_dir: Path, week_start: dt.date | None = None, clinic_ids: Iterable[str] | None = None
) -> list[Entry]:
    """Every digest's latest state in the journals under `out_dir` (one week, some clinics)."""
    wanted = None if clinic_ids is None else set(clinic_ids)
    pattern = f"*/{week_start.isoformat() if week_start else '*'}/{JOURNAL}"
    entries: list[Entry] = []
    for path in sorted(out_dir.glob(pattern)):
        if wanted is not None and path.parent.parent.name not in wanted:
            continue
        entries.extend(_latest(path.read_text(encoding="utf-8").splitlines()).values())
    return entries


def ledger_state(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, week_start: dt.date
) -> dict[tuple[str, str, dt.date, str], Entry]:
    """The warehouse ledger's rows of one clinic's week, read in one query (a source without
    the table, such as a warehouse from before the ledger, has none)."""
    try:
        rows = conn.execute(
            "select clinician_id, kind, status, attempts, error, sent_at, message_id, "
            "outbox_path, coalesce(n_clients, 0) from digest_deliveries "
            "where clinic_id = ? and week_start = ? "
            "order by status = 'sent', updated_at nulls first",
            [clinic_id, week_start],
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    out: dict[tuple[str, str, dt.date, str], Entry] = {}
    for clinician, kind, status, attempts, error, sent_at, message_id, path, n in rows:
        e = Entry(
            clinic_id,
            str(clinician),
            week_start,
            str(kind),
            str(status),
            int(attempts or 0),
            error,
            sent_at,
            message_id,
            path,
            int(n),
        )
        out[e.key] = merge(out.get(e.key), e) or e
    return out


def record(conn: duckdb.DuckDBPyConnection, entries: list[Entry]) -> int:
    """Mirror `entries` into `digest_deliveries` in one transaction (retried on a lake write
    conflict): each replaces its digest's row, except that a `sent` row is never replaced by
    anything but `sent`. Returns the number of entries given."""
    if not entries:
        return 0
    from pipelines.warehouse import retrying, transaction

    batch = pd.DataFrame([asdict(e) for e in entries])
    batch["week_start"] = pd.to_datetime(batch["week_start"]).dt.date
    batch["sent_at"] = pd.to_datetime(batch["sent_at"], utc=True)
    same = " and ".join(f"d.{k} = b.{k}" for k in KEY)
    view = "digest_journal_batch"

    def once() -> None:
        conn.register(view, batch)
        try:
            with transaction(conn):
                conn.execute(
                    f"delete from digest_deliveries as d where exists (select 1 from {view} as b "  # noqa: S608
                    f"where {same} and (b.status = 'sent' or d.status <> 'sent'))"
                )
                conn.execute(
                    f"insert into digest_deliveries by name select clinic_id, clinician_id, "  # noqa: S608
                    "week_start, kind, message_id, status, attempts, error, sent_at, outbox_path, "
                    f"n_clients, now() as updated_at from {view} as b where not exists "
                    f"(select 1 from digest_deliveries as d where {same})"
                )
        finally:
            conn.unregister(view)

    retrying(conn, "writing digest_deliveries", once)
    return len(entries)
