"""The loader: one staged file into the warehouse, exactly once, on every backend.

A file's rows, its quarantined rows, its `loads` row, the clients it queues for detection and
its ledger row (`ingest_files`, keyed by the content hash) commit in one transaction. The steps
that differ between backends (where a load id comes from, how a corrected key is written, how
concurrent writers are kept apart) are the backend's (`Backend.load_id`, `write_measurements`,
`serialize_clinic`, ...); everything else is here, once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.warehouse.backend import Backend, transaction
from pipelines.warehouse.batch import append_history, finish_measure_batch, stage_measure_batch
from pipelines.warehouse.records import (
    NOT_JUDGED,
    FileResult,
    StagedFile,
    parquet_source,
    remove_staged,
    split_code,
)
from pipelines.warehouse.select import backend_of


def record_clinic_settings(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, timezone: str, cadence_days: int
) -> None:
    """Keep `clinic_settings` in step with the clinic's config (the views read its timezone
    and cadence); written only when it changed, by delete and insert (DuckLake has no keys).
    Every ingest of the clinic and the daily freshness check call it."""
    rows = conn.execute(
        "select timezone, cadence_days from clinic_settings where clinic_id = ?", [clinic_id]
    ).fetchall()
    if rows == [(timezone, cadence_days)]:
        return  # (two rows, which two first writers on DuckLake can leave, are rewritten)

    def once() -> None:
        with transaction(conn):
            conn.execute("delete from clinic_settings where clinic_id = ?", [clinic_id])
            conn.execute(
                "insert into clinic_settings values (?, ?, ?, now())",
                [clinic_id, timezone, cadence_days],
            )

    # on a backend with several writers, other clinics' writers commit beside this one
    backend_of(conn).retrying(f"clinic settings of {clinic_id}", once)


def clients_of_earlier_load(conn: duckdb.DuckDBPyConnection, r: FileResult) -> list[str]:
    """The clients an earlier load of this very delivery (same clinic, content and name)
    recorded: what a retried task must still report for detection."""
    row = conn.execute(
        "select l.client_ids from ingest_files as f inner join loads as l using (load_id) "
        "where f.clinic_id = ? and f.sha256 = ? and f.file_name = ? and f.status <> 'rejected' "
        "order by f.received_at limit 1",
        [r.clinic_id, r.sha256, r.file_name],
    ).fetchall()
    return sorted(row[0][0]) if row and row[0][0] else []


def known_hashes(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, config_sha: str | None = None
) -> dict[str, list[str]]:
    """sha256 -> file names already settled in the ledger for a clinic. A delivery rejected,
    or loaded with rows held back, under another fingerprint than `config_sha` (another clinic
    config, guard or suite version), or rejected without its content being judged (a fault of
    ours, or the file changed before it was read: `NOT_JUDGED`), is not settled: it is offered
    again (`load_staged` then loads only the rows held back before that pass now)."""
    rows = conn.execute(
        "select sha256, list(file_name order by received_at) from ingest_files "
        "where clinic_id = ? and (status not in ('rejected', 'loaded_with_quarantine') "
        "  or ? is null or config_sha is not distinct from ?) "
        "and not (status = 'rejected' "
        "  and list_contains(?, split_part(coalesce(error, ''), ':', 1))) "
        "group by sha256",
        [clinic_id, config_sha, config_sha, list(NOT_JUDGED)],
    ).fetchall()
    return {sha: names for sha, names in rows}


def _ledger_insert(conn: duckdb.DuckDBPyConnection, r: FileResult) -> None:
    """The ledger row; `received_at` is the transaction's time."""
    conn.execute(
        """
        insert into ingest_files (
            clinic_id, file_name, sha256, dataset, status, rows_in, rows_loaded,
            rows_quarantined, rows_duplicate, error, top_reasons, data_docs_path, load_id,
            bytes, ignored_columns, config_sha, rows_filtered, filtered_reasons, received_at)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())
        """,
        [
            r.clinic_id,
            r.file_name,
            r.sha256,
            r.dataset,
            r.status,
            r.rows_in,
            r.rows_loaded,
            r.rows_quarantined,
            r.rows_duplicate,
            r.error,
            r.top_reasons,
            r.data_docs_path,
            r.load_id,
            r.bytes,
            r.ignored_columns,
            r.config_sha,
            r.rows_filtered,
            r.filtered_reasons,
        ],
    )


@dataclass(frozen=True)
class PriorVerdict:
    """The ledger's verdict on a delivery that loaded with rows held back under another
    fingerprint (another clinic config, guard or suite version): what judging it again starts
    from."""

    rows_loaded: int
    received_at: object
    first_load_id: int
    held_lines: tuple[int, ...]  # line numbers of the rows held back


def prior_verdict(conn: duckdb.DuckDBPyConnection, r: FileResult) -> PriorVerdict | None:
    """The earlier verdict on this very delivery (clinic, content and name) when it loaded with
    rows held back under another fingerprint than `r.config_sha`; None otherwise (then a
    delivery already in the ledger is a rerun or a duplicate, as ever)."""
    if r.config_sha is None:
        return None
    row = conn.execute(
        "select rows_loaded, received_at, config_sha from ingest_files "
        "where clinic_id = ? and sha256 = ? and file_name = ? "
        "and status = 'loaded_with_quarantine'",
        [r.clinic_id, r.sha256, r.file_name],
    ).fetchall()
    if not row or row[0][2] == r.config_sha:
        return None
    first = conn.execute(
        "select min(load_id) from loads where clinic_id = ? and sha256 = ?",
        [r.clinic_id, r.sha256],
    ).fetchall()[0][0]
    lines = conn.execute(
        "select distinct line_number from quarantined_rows "
        "where clinic_id = ? and sha256 = ? and file_name = ? order by 1",
        [r.clinic_id, r.sha256, r.file_name],
    ).fetchall()
    return PriorVerdict(
        rows_loaded=int(row[0][0]),
        received_at=row[0][1],
        first_load_id=int(first) if first is not None else 0,
        held_lines=tuple(int(n) for (n,) in lines),
    )


def release_held_rows(
    conn: duckdb.DuckDBPyConnection, staged: StagedFile, prior: PriorVerdict
) -> bool:
    """Judging a delivery again that loaded with rows held back: narrow its staged rows to
    what may change now, inside the caller's transaction. Valid rows are only those held back
    before (the others loaded then, or were copies), less any whose key a later delivery has
    set since (a later export supersedes an earlier one); quarantined rows only those held
    back before (a row loaded then stays loaded). Returns False when there is nothing to load
    and the old verdict stands: then the ledger row is only marked as judged under the new
    fingerprint, and `staged.result` becomes `already_loaded` (a verdict that judged nothing,
    `NOT_JUDGED`, is returned as it is and leaves the row to be offered again)."""
    r = staged.result
    if r.status == "rejected" and not (r.error or "").startswith("no_valid_rows"):
        if split_code(r.error) in NOT_JUDGED:
            return False  # shown as it is (a fault is reported), judged again next run
        _mark_judged(conn, r)
        r.status = "already_loaded"
        return False
    held = pa.table({"line_number": pa.array(prior.held_lines, pa.int64())})
    conn.register("held_lines", held)
    try:
        if staged.valid_path is not None:
            fresh, params = _not_superseded(r, prior.first_load_id)
            staged.valid_path = _narrowed(
                conn,
                staged.valid_path,
                f"source_line in (select line_number from held_lines) and {fresh}",  # noqa: S608
                params,
            )
            staged.clients = None
        if staged.quarantine_path is not None:
            staged.quarantine_path = _narrowed(
                conn,
                staged.quarantine_path,
                "line_number in (select line_number from held_lines)",
                [],
            )
    finally:
        conn.unregister("held_lines")
    if staged.valid_path is None:
        _mark_judged(conn, r)
        r.status = "already_loaded"
        return False
    r.rejudged = True
    r.rows_quarantined = (
        int(
            conn.execute(
                "select count(*) from read_parquet(?)", [parquet_source(staged.quarantine_path)]
            ).fetchall()[0][0]
        )
        if staged.quarantine_path is not None
        else 0
    )
    r.rows_duplicate = 0  # worked out from the counts once loaded (`count_released`)
    r.error = None
    return True


def _not_superseded(r: FileResult, first_load_id: int) -> tuple[str, list[object]]:
    """A condition on a staged row `s`, and its parameters: no delivery loaded after this one
    set its key."""
    key: tuple[str, ...] = ("client_id", "episode_id", "session_number", "instrument")
    table = "measurements"
    if r.dataset == "appointments":
        table, key = "appointments", ("client_id", "appointment_date")
    on = " and ".join(f"c.{k} = s.{k}" for k in key)
    sql = (
        f"not exists (select 1 from {table} as c where c.clinic_id = ? and {on} "  # noqa: S608
        "and c.load_id > ? and c.sha256 <> ?)"
    )
    return sql, [r.clinic_id, first_load_id, r.sha256]


def _narrowed(
    conn: duckdb.DuckDBPyConnection, path: Path, where: str, params: list[object]
) -> Path | None:
    """The staged rows of `path` that meet `where`, staged anew beside it (None: none)."""
    out = path.with_name(path.name + ".released")
    remove_staged(out)
    out.mkdir(parents=True)
    target = out / "p00000.parquet"
    quoted = str(target).replace("'", "''")
    conn.execute(
        f"copy (select * from read_parquet(?) as s where {where}) "  # noqa: S608
        f"to '{quoted}' (format parquet)",
        [parquet_source(path), *params],
    )
    remove_staged(path)
    if not conn.execute("select count(*) from read_parquet(?)", [str(target)]).fetchall()[0][0]:
        remove_staged(out)
        return None
    return out


def _mark_judged(conn: duckdb.DuckDBPyConnection, r: FileResult) -> None:
    conn.execute(
        "update ingest_files set config_sha = ? where clinic_id = ? and sha256 = ? "
        "and file_name = ? and status = 'loaded_with_quarantine'",
        [r.config_sha, r.clinic_id, r.sha256, r.file_name],
    )


def count_released(r: FileResult, prior: PriorVerdict) -> None:
    """The ledger counts of a delivery judged again: the rows loaded now join those loaded
    before, the rows held back are those still held back, the rest were copies (or set by a
    later delivery since)."""
    r.rows_released = r.rows_loaded
    r.rows_loaded = prior.rows_loaded + r.rows_released
    r.rows_duplicate = r.rows_in - r.rows_loaded - r.rows_quarantined
    r.status = "loaded_with_quarantine" if r.rows_quarantined else "loaded"


def load_staged(conn: duckdb.DuckDBPyConnection, staged: StagedFile) -> FileResult:
    """Load one staged file exactly once: rows, quarantine, clients touched and ledger row
    commit together or not at all. A file whose hash is already in the ledger loads nothing.
    Where several writers may load at once, a load that conflicts with another is tried again
    from the start (each attempt on its own copy of the result and staged files). Returns the
    file's result (`staged.result`, updated), or a `duplicate` result for the ledger."""
    backend = backend_of(conn)
    backend.before_load(conn, staged.result.clinic_id)
    result, used = backend.retrying(
        f"loading {staged.result.file_name!r} of clinic {staged.result.clinic_id}",
        lambda: _load_once(conn, staged, backend),
    )
    for name in ("valid_path", "quarantine_path"):
        if getattr(used, name) != getattr(staged, name):
            remove_staged(getattr(staged, name))  # the caller removes what was used instead
            setattr(staged, name, getattr(used, name))
    if result.status == "duplicate":
        return result
    vars(staged.result).update(vars(result))
    return staged.result


def _load_once(
    conn: duckdb.DuckDBPyConnection, staged: StagedFile, backend: Backend
) -> tuple[FileResult, StagedFile]:
    """One attempt, one transaction; (its result, the staged files it used)."""
    r = copy.deepcopy(staged.result)
    reserved = backend.reserve_load_id(conn)
    with transaction(conn) as tx:
        backend.serialize_clinic(conn, r.clinic_id)
        # Only accepted content makes a later delivery a duplicate: rejected bytes may be
        # judged again (under a corrected clinic config).
        seen = conn.execute(
            "select file_name from ingest_files where clinic_id = ? and sha256 = ? "
            "and status <> 'rejected' order by received_at limit 1",
            [r.clinic_id, r.sha256],
        ).fetchall()
        # a delivery loaded with rows held back under another fingerprint is judged again
        prior = prior_verdict(conn, r) if seen else None
        used = StagedFile(
            r, staged.valid_path, staged.quarantine_path, staged.keys_unique, staged.clients
        )
        if prior is not None:
            used = backend.attempt_copy(staged, r)
            if not release_held_rows(conn, used, prior):
                return r, used  # committed: the verdict stands under the new fingerprint
        if seen and prior is None:
            same_name = conn.execute(
                "select count(*) from ingest_files where clinic_id = ? and sha256 = ? "
                "and file_name = ? and status <> 'rejected'",
                [r.clinic_id, r.sha256, r.file_name],
            ).fetchall()[0][0]
            if same_name:
                # the very same delivery again (a rerun): nothing to record twice
                tx.rollback()
                r.status = "already_loaded"
                return r, used
            dup = FileResult(
                clinic_id=r.clinic_id,
                file_name=r.file_name,
                sha256=r.sha256,
                dataset=r.dataset,
                status="duplicate",
                bytes=r.bytes,
                error=f"same content as {seen[0][0]!r}, already received; nothing loaded",
            )
            _ledger_insert(conn, dup)
            return dup, used
        # this exact delivery was rejected (or loaded with rows held back) before: its new
        # verdict replaces the old one (a delete that removes nothing is skipped: it would only
        # widen conflicts between writers)
        for table in ("quarantined_rows", "ingest_files"):
            where = "where clinic_id = ? and sha256 = ? and file_name = ?"
            params = [r.clinic_id, r.sha256, r.file_name]
            if conn.execute(f"select count(*) from {table} {where}", params).fetchall()[0][0]:  # noqa: S608
                conn.execute(f"delete from {table} {where}", params)  # noqa: S608
        # a file whose every row was quarantined is rejected, yet its rows and reasons are kept
        if r.status != "rejected" or used.quarantine_path is not None:
            r.load_id = backend.load_id(conn, reserved)
            if used.valid_path is not None:
                _load_rows(conn, used, r, backend)
            record_quarantine_and_load(conn, used, r)
        if prior is not None:
            count_released(r, prior)
        assert r.rows_in == r.rows_loaded + r.rows_quarantined + r.rows_duplicate, r
        _ledger_insert(conn, r)
        if prior is not None:  # still received when it was first delivered
            conn.execute(
                "update ingest_files set received_at = ? "
                "where clinic_id = ? and sha256 = ? and file_name = ?",
                [prior.received_at, r.clinic_id, r.sha256, r.file_name],
            )
    return r, used


def _load_rows(
    conn: duckdb.DuckDBPyConnection, staged: StagedFile, r: FileResult, backend: Backend
) -> None:
    assert staged.valid_path is not None
    src = parquet_source(staged.valid_path)
    if r.dataset == "appointments":
        r.rows_loaded, r.clients_touched = backend.load_appointments(conn, r, src)
        return
    counts = stage_measure_batch(conn, r.clinic_id, src, staged.keys_unique)
    append_history(conn, r, counts)
    backend.write_measurements(conn, r, src, counts)
    finish_measure_batch(conn, r, counts, src, staged.clients)


def record_quarantine_and_load(
    conn: duckdb.DuckDBPyConnection, staged: StagedFile, r: FileResult
) -> None:
    """In the file's transaction, after its rows: its quarantined rows, its `loads` row (with
    the clients it touched) and those clients queued in `detection_pending`, for the embedded
    and the DuckLake loader alike: detection cannot miss a load that committed."""
    if staged.quarantine_path is not None:
        conn.execute(
            """
            insert into quarantined_rows
            select ? as clinic_id, ? as file_name, ? as sha256, line_number, reasons,
                   row_data::json, ? as load_id
            from read_parquet(?)
            """,
            [r.clinic_id, r.file_name, r.sha256, r.load_id, parquet_source(staged.quarantine_path)],
        )
    conn.execute(
        "insert into loads values (?, ?, ?, ?, ?, now())",
        [r.load_id, r.clinic_id, r.sha256, r.clients_touched, r.rows_loaded],
    )
    if r.clients_touched:
        conn.execute(
            "insert into detection_pending (clinic_id, client_id, load_id, queued_at) "
            "select ?, unnest(?::varchar[]), ?, now()",
            [r.clinic_id, r.clients_touched, r.load_id],
        )
