"""The warehouse: the one module that opens the DuckDB file.

DuckDB lets one process open a database file read-write, and then no other process may open it
at all. So every writer goes through `connect()`, which waits with a bounded retry for the file
lock and then fails with a clear `WarehouseBusy`; the Airflow DAGs also serialize writers in a
pool of one slot. Analysts read a snapshot (`publish_snapshot`), never the live file.

Loads are exactly once per file: a file's rows, its quarantined rows and its ledger row commit in
one transaction, keyed by the content hash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines import registry
from pipelines.errors import AllianceWatchError, WarehouseBusy

log = logging.getLogger(__name__)
SQL_DIR = Path(
    os.environ.get("ALLIANCE_WATCH_SQL_DIR", Path(__file__).resolve().parents[1] / "sql")
)
MEASURE_KEY = ("clinic_id", "client_id", "episode_id", "session_number", "instrument")
VALUE_COLUMNS = (
    "clinician_id",
    "session_date",
    "instrument_version",
    *registry.ITEM_COLUMNS,
    "total",
)


def sql_text(relative: str) -> str:
    """The text of a file under sql/ (e.g. ``detect/flags.sql``)."""
    return (SQL_DIR / relative).read_text(encoding="utf-8")


def memory_limit() -> str:
    """DuckDB's memory cap for warehouse connections: env ALLIANCE_WATCH_DUCKDB_MEMORY, else
    512MB. DuckDB otherwise caches up to 80 % of RAM; beyond the cap it spills to disk, so
    ingest's peak memory stays bounded however large the warehouse grows."""
    return os.environ.get("ALLIANCE_WATCH_DUCKDB_MEMORY", "512MB")


def load_memory_limit() -> str:
    """DuckDB's memory cap while `ingest_clinics` loads: env ALLIANCE_WATCH_LOAD_MEMORY, else
    256MB. The loader shares the machine with the processes preparing the next files, and a
    load streams from a staged file (1M rows load as fast under 256MB as under 512MB; peak
    memory of a 5M-row ingest drops by ~160 MB)."""
    return os.environ.get("ALLIANCE_WATCH_LOAD_MEMORY", "256MB")


def load_threads() -> int:
    """DuckDB's threads while `ingest_clinics` loads: env ALLIANCE_WATCH_LOAD_THREADS, else 1.
    A file's load is one transaction of mostly serial work: on this project's 2-core machine,
    five 200k-row files load in the same ~2.0 s with 1 thread as with 2, for 2.0 s of CPU
    instead of 2.6 s, and that CPU is what the workers preparing the next files need."""
    return int(os.environ.get("ALLIANCE_WATCH_LOAD_THREADS", "1"))


def lock_timeout_s() -> float:
    """How long a writer waits for the file lock: env ALLIANCE_WATCH_LOCK_TIMEOUT_S, else 60 s."""
    return float(os.environ.get("ALLIANCE_WATCH_LOCK_TIMEOUT_S", "60"))


def _ducklake_selected() -> bool:
    """Whether env ALLIANCE_WATCH_WAREHOUSE_BACKEND=ducklake selects the DuckLake warehouse
    (pipelines.ducklake; the `path` arguments below are then not used)."""
    return os.environ.get("ALLIANCE_WATCH_WAREHOUSE_BACKEND", "").strip().lower() == "ducklake"


def connect(
    path: Path | str, read_only: bool = False, timeout_s: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; wait up to `timeout_s` (default `lock_timeout_s()`) for another
    process's lock, retrying with a growing pause, then raise WarehouseBusy."""
    if _ducklake_selected():
        from pipelines import ducklake

        return ducklake.connect(read_only=read_only)
    timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
    path = Path(path)
    _check_is_duckdb_file(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(
                str(path), read_only=read_only, config={"memory_limit": memory_limit()}
            )
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() >= deadline:
                if "lock" in str(e).lower():
                    raise WarehouseBusy(
                        f"warehouse {path} is held by another process for more than "
                        f"{timeout_s:.0f} s; retry later or raise the timeout"
                    ) from None
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _check_is_duckdb_file(path: Path) -> None:
    """Refuse an existing file that is not a DuckDB database: DuckDB would otherwise attach
    something else (or nothing) and a run would "load" into memory and lose it."""
    if not path.exists():
        return
    if not path.is_file():
        raise AllianceWatchError(f"warehouse {path} is not a file")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head and head[8:12] != b"DUCK":
        raise AllianceWatchError(
            f"warehouse {path} is not a DuckDB database file; give a new or existing .duckdb path"
        )


@contextlib.contextmanager
def open_warehouse(
    path: Path | str, read_only: bool = False, timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """connect() + migrate() (for writers), closed on exit."""
    conn = connect(path, read_only=read_only, timeout_s=timeout_s)
    try:
        if not read_only:
            migrate(conn)
        yield conn
    finally:
        conn.close()


def migrate(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every sql/schema/*.sql not yet applied, in order; return the versions applied."""
    if _ducklake_selected():
        from pipelines import ducklake

        return ducklake.migrate(conn)
    conn.execute(
        "create table if not exists schema_migrations ("
        " version varchar primary key, applied_at timestamptz default now())"
    )
    done = {r[0] for r in conn.execute("select version from schema_migrations").fetchall()}
    applied: list[str] = []
    for f in sorted((SQL_DIR / "schema").glob("*.sql")):
        if f.stem in done:
            continue
        conn.execute("begin transaction")
        try:
            conn.execute(f.read_text(encoding="utf-8"))
            conn.execute("insert into schema_migrations (version) values (?)", [f.stem])
            conn.execute("commit")
        except Exception:
            conn.execute("rollback")
            raise
        applied.append(f.stem)
    if applied or not done:
        _load_registry(conn)
    create_views(conn)
    if applied:
        # Fold the new schema into the file now. DuckDB 1.4 cannot replay a write-ahead log
        # that holds a fresh warehouse's schema followed by a load ("GetDefaultDatabase with
        # no default database set"), so a load killed in the same session would leave a file
        # that no longer opens (tests/test_exactly_once.py kills one there).
        conn.execute("checkpoint")
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
    files = {f.stem: f for f in sorted((SQL_DIR / "views").glob("*.sql"))}
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


def _load_registry(conn: duckdb.DuckDBPyConnection) -> None:
    rows = pa.Table.from_pylist(registry.registry_table())
    conn.register("registry_rows", rows)
    conn.execute("delete from instruments")
    conn.execute("insert into instruments by name select * from registry_rows")
    conn.unregister("registry_rows")


@dataclass
class FileResult:
    """What happened to one delivered file; mirrors its `ingest_files` row."""

    clinic_id: str
    file_name: str
    sha256: str
    dataset: str | None
    status: str  # loaded | loaded_with_quarantine | rejected | duplicate
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    # rows not taken in (outside rows_in): blank lines, rows a `keep_rows` condition excludes;
    # `filtered_reasons` names each reason with its count
    rows_filtered: int = 0
    filtered_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    top_reasons: list[str] = field(default_factory=list)
    data_docs_path: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    bytes: int = 0
    clients_touched: list[str] = field(default_factory=list)
    load_id: int | None = None
    # fingerprint of what it was judged under: the clinic config, the guard's and the suites'
    # versions (`pipelines.ingest.judge_fingerprint`)
    config_sha: str | None = None
    # judged again (it had loaded with rows held back, under another fingerprint): how many of
    # the rows held back then loaded now
    rejudged: bool = False
    rows_released: int = 0


@dataclass
class StagedFile:
    """A prepared file, ready for the single writer: its result so far and staged Parquet."""

    result: FileResult
    # Parquet: a file, or a folder of part files (`parquet_source`)
    valid_path: Path | None = None  # canonical rows to load
    quarantine_path: Path | None = None  # line_number, reasons, row_data
    # What preparing already established about the valid rows (None: not known, the loader
    # works it out): no key twice, and the sorted distinct clients.
    keys_unique: bool = False
    clients: list[str] | None = None


def parquet_source(path: Path) -> str:
    """What `read_parquet` reads for a staged path: a Parquet file, or every part file of a
    folder (a file prepared in parts), in part order."""
    return str(path / "*.parquet") if path.is_dir() else str(path)


def remove_staged(path: Path | None) -> None:
    """Delete a staged Parquet file or folder of part files (missing is fine)."""
    if path is None:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# the reason of a file rejected for a fault in Alliance Watch, not in the file: offered again
INTERNAL_ERROR = "internal_error"
# the reason of a file removed or rewritten between discovery and reading: offered again
CHANGED_AFTER_DISCOVERY = "changed_after_discovery"
# the reason of a file that could not be opened or read (permissions, I/O): offered again
UNREADABLE = "unreadable"
# the reason of a file that could not be staged because the stage disk was full: offered again
STAGE_FULL = "stage_full"
# rejections that judged nothing of the file's content
NOT_JUDGED = (INTERNAL_ERROR, CHANGED_AFTER_DISCOVERY, UNREADABLE, STAGE_FULL)


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one transaction: committed at its end, rolled back if it raises."""
    conn.execute("begin transaction")
    try:
        yield
        conn.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            conn.execute("rollback")
        raise


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

    if _ducklake_selected():  # other clinics' writers commit beside this one
        from pipelines import ducklake

        ducklake.retrying(f"clinic settings of {clinic_id}", once)
    else:
        once()


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
    conn.execute(
        """
        insert into ingest_files (
            clinic_id, file_name, sha256, dataset, status, rows_in, rows_loaded,
            rows_quarantined, rows_duplicate, error, top_reasons, data_docs_path, load_id,
            bytes, ignored_columns, config_sha, rows_filtered, filtered_reasons)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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


def split_code(error: str | None) -> str:
    return (error or "").split(":", 1)[0]


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
    commit together or not at all. A file whose hash is already in the ledger loads nothing."""
    if _ducklake_selected():
        from pipelines import ducklake

        return ducklake.load_staged(conn, staged)
    r = staged.result
    conn.execute("begin transaction")
    try:
        # Only accepted content makes a later delivery a duplicate: rejected bytes may be
        # judged again (under a corrected clinic config).
        seen = conn.execute(
            "select file_name from ingest_files where clinic_id = ? and sha256 = ? "
            "and status <> 'rejected' order by received_at limit 1",
            [r.clinic_id, r.sha256],
        ).fetchall()
        prior = prior_verdict(conn, r) if seen else None
        if prior is not None and not release_held_rows(conn, staged, prior):
            conn.execute("commit")  # the verdict stands under the new fingerprint
            return r
        if seen and prior is None:
            same_name = conn.execute(
                "select count(*) from ingest_files where clinic_id = ? and sha256 = ? "
                "and file_name = ? and status <> 'rejected'",
                [r.clinic_id, r.sha256, r.file_name],
            ).fetchall()[0][0]
            conn.execute("rollback")
            if same_name:
                # the very same delivery again (a rerun): nothing to record twice
                r.status = "already_loaded"
                return r
            dup = FileResult(
                clinic_id=r.clinic_id,
                file_name=r.file_name,
                sha256=r.sha256,
                dataset=r.dataset,
                status="duplicate",
                bytes=r.bytes,
                error=f"same content as {seen[0][0]!r}, already received; nothing loaded",
            )
            conn.execute("begin transaction")
            _ledger_insert(conn, dup)
            conn.execute("commit")
            return dup
        # this exact delivery was rejected (or loaded with rows held back) before: its new
        # verdict replaces the old one
        for table in ("quarantined_rows", "ingest_files"):
            conn.execute(
                f"delete from {table} where clinic_id = ? and sha256 = ? and file_name = ?",  # noqa: S608
                [r.clinic_id, r.sha256, r.file_name],
            )
        # a file whose every row was quarantined is rejected, yet its rows and reasons are kept
        if r.status != "rejected" or staged.quarantine_path is not None:
            r.load_id = conn.execute("select nextval('load_id_seq')").fetchall()[0][0]
            if staged.valid_path is not None:
                _load_rows(conn, staged, r)
            record_quarantine_and_load(conn, staged, r)
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
        conn.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            conn.execute("rollback")
        raise
    return r


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


# The steps of loading a measures file shared by the embedded and the DuckLake loader: the
# file's rows are classified against current values in a temp table `batch`.
KEY_JOIN = " and ".join(f"b.{c} = m.{c}" for c in MEASURE_KEY)
MEASURE_COLUMNS = ", ".join(
    [
        *MEASURE_KEY[:3],
        "clinician_id",
        "session_number",
        "session_date",
        "instrument",
        "instrument_version",
        *registry.ITEM_COLUMNS,
        "total",
    ]
)


# the key within one clinic's file
FILE_KEY = ("client_id", "episode_id", "session_number", "instrument")


def _qualified(alias: str) -> str:
    """MEASURE_COLUMNS, each prefixed with a table alias."""
    return ", ".join(f"{alias}.{c.strip()}" for c in MEASURE_COLUMNS.split(","))


# The staged file's rows as a subquery; parameters: the clinic_id, then the file's path.
INCOMING = "(select * replace (? as clinic_id) from read_parquet(?))"


def stage_measure_batch(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, src: str, keys_unique: bool = False
) -> dict[str, int]:
    """Classify a staged file's rows as new, same (identical to the current value) or changed;
    refuse duplicate keys. Returns the count per kind.

    Only rows whose key is already current are materialized, in temp table `batch` (with their
    `change_kind`, same or changed): usually few, so a delivery of new sessions is read from
    its staged file once more when inserted instead of being copied in memory first."""
    same_values = " and ".join(f"b.{c} is not distinct from m.{c}" for c in VALUE_COLUMNS)
    conn.execute(
        f"""
        create or replace temp table batch as
        select
            b.*,
            case when {same_values} then 'same' else 'changed' end as change_kind
        from {INCOMING} as b
        inner join (select * from measurements where clinic_id = ?) as m on {KEY_JOIN}
        """,  # noqa: S608 - column names come from constants
        [clinic_id, src, clinic_id],
    )
    key = ", ".join(FILE_KEY)
    # a batch assembled from parts had its keys counted when it was assembled
    dupkeys_sql = "0" if keys_unique else f"count(*) - count(distinct ({key}))"
    rows, dupkeys = conn.execute(
        f"select count(*), {dupkeys_sql} from read_parquet(?)",  # noqa: S608
        [src],
    ).fetchall()[0]
    if dupkeys:
        raise AssertionError("validation let duplicate keys through; refusing to load")
    counts = {
        kind: int(n)
        for kind, n in conn.execute("select change_kind, count(*) from batch group by 1").fetchall()
    }
    counts["new"] = int(rows) - sum(counts.values())
    return {k: n for k, n in counts.items() if n}


def _not_in_batch(kinds: tuple[str, ...]) -> str:
    """A condition on incoming row `b`: its key is not among the batch rows of these kinds."""
    on = " and ".join(f"k.{c} = b.{c}" for c in FILE_KEY)
    listed = ", ".join(f"'{k}'" for k in kinds)
    return f"not exists (select 1 from batch as k where k.change_kind in ({listed}) and {on})"  # noqa: S608


def insert_measurements(
    conn: duckdb.DuckDBPyConnection,
    r: FileResult,
    src: str,
    counts: dict[str, int],
    include_changed: bool = False,
) -> None:
    """Insert the staged file's new rows (keys not current yet) as current values, and with
    `include_changed` its changed rows too (for a store that deletes and re-inserts them).
    `counts` is what `stage_measure_batch` returned: with no skipped kind in the batch, every
    row goes in without the anti-join."""
    skip = ("same",) if include_changed else ("same", "changed")
    existing = any(counts.get(kind) for kind in skip)
    conn.execute(
        f"""
        insert into measurements by name
        select {_qualified("b")},
               ? as source_file, b.source_line, ? as sha256, ? as load_id, now() as loaded_at
        from {INCOMING} as b
        where {_not_in_batch(skip) if existing else "true"}
        """,  # noqa: S608 - column names come from constants
        [r.file_name, r.sha256, r.load_id, r.clinic_id, src],
    )


def append_history(conn: duckdb.DuckDBPyConnection, r: FileResult, counts: dict[str, int]) -> None:
    """Keep the versions this batch replaces: the current rows of changed keys are copied to
    `measurements_superseded` before they are updated (the view `measurements_history` shows
    them with every current row). New and identical rows add nothing here."""
    if not counts.get("changed"):
        return
    conn.execute(
        f"""
        insert into measurements_superseded by name
        select {_qualified("m")},
               m.source_file, m.source_line, m.sha256, m.load_id, m.loaded_at,
               now() as superseded_at
        from measurements as m
        inner join batch as b on {KEY_JOIN}
        where b.change_kind = 'changed'
        """  # noqa: S608 - column names come from constants
    )


def finish_measure_batch(
    conn: duckdb.DuckDBPyConnection,
    r: FileResult,
    counts: dict[str, int],
    src: str,
    clients: list[str] | None = None,
) -> None:
    """Record what the batch loaded on the file's result (the clients of every row that was not
    identical to its current value), and drop the batch. `clients`: the batch's distinct
    clients when preparing already listed them (then only a batch with identical rows is
    read again)."""
    r.rows_loaded = counts.get("new", 0) + counts.get("changed", 0)
    r.rows_duplicate += counts.get("same", 0)
    if clients is not None and not counts.get("same"):
        r.clients_touched = list(clients)
        conn.execute("drop table batch")
        return
    r.clients_touched = [
        c
        for (c,) in conn.execute(
            f"select distinct client_id from {INCOMING} as b "  # noqa: S608
            f"where {_not_in_batch(('same',))} order by 1",
            [r.clinic_id, src],
        ).fetchall()
    ]
    conn.execute("drop table batch")


def _load_rows(conn: duckdb.DuckDBPyConnection, staged: StagedFile, r: FileResult) -> None:
    assert staged.valid_path is not None
    src = parquet_source(staged.valid_path)
    if r.dataset == "appointments":
        conn.execute(
            """
            insert or replace into appointments
            select clinic_id, client_id, clinician_id, appointment_date, status,
                   ? as source_file, source_line, ? as sha256, ? as load_id
            from read_parquet(?)
            """,  # noqa: S608 - constant SQL
            [r.file_name, r.sha256, r.load_id, src],
        )
        n = conn.execute("select count(*) from read_parquet(?)", [src]).fetchall()[0][0]
        r.rows_loaded = int(n)
        r.clients_touched = [
            c
            for (c,) in conn.execute(
                "select distinct client_id from read_parquet(?) order by 1", [src]
            ).fetchall()
        ]
        return
    counts = stage_measure_batch(conn, r.clinic_id, src, staged.keys_unique)
    append_history(conn, r, counts)
    # new keys: a plain insert; corrected keys: update the current row's values in place
    insert_measurements(conn, r, src, counts)
    updates = ", ".join(f"{c} = b.{c}" for c in VALUE_COLUMNS)
    conn.execute(
        f"""
        update measurements as m
        set {updates}, source_file = ?, source_line = b.source_line, sha256 = ?, load_id = ?,
            loaded_at = now()
        from batch as b
        where b.change_kind = 'changed' and {KEY_JOIN}
        """,  # noqa: S608
        [r.file_name, r.sha256, r.load_id],
    )
    finish_measure_batch(conn, r, counts, src, staged.clients)


def clinic_snapshots_wanted(snapshot: Path) -> bool:
    """Per-clinic snapshots are on when ALLIANCE_WATCH_CLINIC_SNAPSHOTS is set (1/true/yes),
    and stay on once their folder exists beside the snapshot."""
    flag = os.environ.get("ALLIANCE_WATCH_CLINIC_SNAPSHOTS", "").strip().lower()
    return flag in ("1", "true", "yes") or (snapshot.parent / "clinics").is_dir()


def publish_snapshot(warehouse: Path, snapshot: Path, per_clinic: bool | None = None) -> Path:
    """Copy the (closed) warehouse to `snapshot` atomically: readers see old or new, never half.

    An analyst may hold the old snapshot open meanwhile: `os.replace` swaps the name, the open
    file lives on until its reader lets go. With `per_clinic` (default: when
    `clinic_snapshots_wanted`), also write ``<snapshot folder>/clinics/<clinic_id>.duckdb``
    holding only that clinic's rows.
    Call it while holding the writer slot and with no open connection to `warehouse`.
    Under DuckLake there is no file to copy: analysts read the lake itself (snapshot-isolated,
    concurrent with loads), so this does nothing.
    """
    from pipelines import ducklake

    if ducklake.selected():
        log.info("DuckLake warehouse: analysts read the lake; no snapshot file to publish")
        return snapshot
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = snapshot.with_name(f".{snapshot.name}.tmp-{os.getpid()}")
    # the connection holds the file's lock until the copy is done: a writer in another
    # process (a CLI run beside the Airflow pool) waits instead of tearing the copy
    conn = connect(warehouse)
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
    src = connect(warehouse, read_only=True)
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
