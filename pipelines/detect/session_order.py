"""Alliance sessions dated out of session order: found, left out of detection and recorded.

A session dated after a higher-numbered session of the same series (clinic, client, treatment
episode, instrument) is left out of detection: the windows order a series by session number and
the calibration pools by calendar week, so the session would rest on sessions dated after it (a
look-ahead that moves the whole clinic's flags), and its misses "since the previous session"
could count backwards. `sql/detect/dated_out_of_order.sql` finds them (the rule and why it
looks only backwards in time are written there); `sql/detect/alliance_series.sql` leaves them
out; `record` names them (`sql/detect/excluded_sessions.sql`) and writes them, with their
reason, to the warehouse table `detect_excluded_sessions`,
which the clinic's data team sees in its weekly data-quality summary (docs/detection.md, "Sessions
dated out of order").
"""

from __future__ import annotations

import duckdb

from pipelines.warehouse import sql_text

RELATION = "detect_dated_out_of_order"

EXCLUDED_COLUMNS: tuple[str, ...] = (
    "clinic_id",
    "client_id",
    "episode_id",
    "instrument",
    "session_number",
    "session_date",
    "later_session_number",
    "later_session_date",
    "source_file",
    "source_line",
    "reason",
)


def build(conn: duckdb.DuckDBPyConnection) -> None:
    """The temp table `detect_dated_out_of_order` (series key, session number and dates of each
    session left out) of the clinics in scope (it reads `detect_scope_measurements` and
    `detect_params`); alliance_series anti-joins it."""
    conn.execute(
        f"create or replace temp table {RELATION} as {sql_text('detect/dated_out_of_order.sql')}"
    )


def drop(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"drop table if exists {RELATION}")


def record(conn: duckdb.DuckDBPyConnection, scoped: bool) -> int:
    """Make `detect_excluded_sessions` hold the sessions left out for the clinics in scope (every
    clinic for a full run): the whole clinic's rows are replaced, as every run computes them from
    all the clinic's sessions, so incremental and full runs leave the same rows. Call inside
    detect's transaction. Returns the number of sessions left out in scope."""
    in_scope = " where clinic_id in (select distinct clinic_id from detect_scope)" if scoped else ""
    conn.execute(f"delete from detect_excluded_sessions{in_scope}")  # noqa: S608
    row = conn.execute(f"select count(*) from {RELATION}").fetchone()  # noqa: S608
    n = int(row[0]) if row else 0
    if n:
        # naming them reads the measurements again: only when there are any
        cols = ", ".join(EXCLUDED_COLUMNS)
        conn.execute(
            f"insert into detect_excluded_sessions ({cols}) "  # noqa: S608
            f"select {cols} from ({sql_text('detect/excluded_sessions.sql')})"
        )
    return n
