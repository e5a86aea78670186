"""The steps of loading a measures file that every backend shares: the file's rows are
classified against the current values in a temp table `batch` (new, same, changed)."""

from __future__ import annotations

import duckdb

from pipelines import registry
from pipelines.warehouse.records import FileResult
from pipelines.warehouse.schema import MEASURE_KEY, VALUE_COLUMNS

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
