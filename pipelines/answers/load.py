"""Load the answers inbox into `alert_feedback`, exactly once (the `ingest_feedback` DAG and
tests call `load_answers`; it needs the warehouse writer).

Every answer waiting in the inbox is read, checked against the alert episodes and written in
one transaction: to `alert_feedback` when the clinician is the one the episode's flags went to,
else to `alert_feedback_refused` with the reason (nothing is dropped). Answer ids already in
either table are skipped, so a run that crashed after its commit but before removing the files
loads nothing twice. Only after the commit are the files removed.
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pandas as pd

from pipelines.answers import inbox as answers_inbox
from pipelines.answers.tokens import Answer
from pipelines.settings import Paths
from pipelines.warehouse import transaction

log = logging.getLogger("alliance_watch.answers")

_COLUMNS = ["answer_id", "alert_episode_id", "clinician_id", "answer", "answered_at"]

_JUDGE_SQL = """
with incoming as (
    select * from incoming_answers
),

fresh as (
    -- answer ids already loaded (or refused) are not loaded again
    select i.*
    from incoming as i
    anti join alert_feedback as f on i.answer_id = f.answer_id
    anti join alert_feedback_refused as r on i.answer_id = r.answer_id
),

owners as (
    -- a clinician answers for an episode when a flag of that episode was at their session
    select distinct
        alert_episode_id,
        clinician_id
    from flags
),

judged as (
    select
        i.answer_id,
        i.alert_episode_id,
        e.clinic_id,
        e.client_id,
        i.clinician_id,
        i.answer,
        i.answered_at,
        case
            when e.alert_episode_id is null then 'unknown_episode'
            when o.clinician_id is null and e.clinician_id <> i.clinician_id
                then 'not_their_client'
        end as reason
    from fresh as i
    left join alert_episodes as e on i.alert_episode_id = e.alert_episode_id
    left join owners as o
        on i.alert_episode_id = o.alert_episode_id
        and i.clinician_id = o.clinician_id
)

select * from judged
"""


def _frame(items: list[answers_inbox.InboxAnswer]) -> pd.DataFrame:
    df = pd.DataFrame(
        [{c: getattr(a, c) for c in _COLUMNS} for a in items], columns=_COLUMNS
    ).drop_duplicates("answer_id")
    df["answered_at"] = pd.to_datetime(df["answered_at"], utc=True)
    bad = ~df.answer.isin([a.value for a in Answer])
    if bad.any():  # written by our endpoint from a signed token: never expected
        raise ValueError(f"{int(bad.sum())} inbox answer(s) hold an unknown answer code")
    return df


def load_into(conn: duckdb.DuckDBPyConnection, items: list[answers_inbox.InboxAnswer]) -> dict:
    """Write `items` (from the inbox) in one transaction; returns counts (no codes)."""
    if not items:
        return {"answers_read": 0, "loaded": 0, "refused": 0, "already_loaded": 0}
    conn.register("incoming_answers", _frame(items))
    try:
        with transaction(conn):
            conn.execute(f"create temp table judged_answers as {_JUDGE_SQL}")  # noqa: S608
            conn.execute(
                """
                insert into alert_feedback (answer_id, alert_episode_id, clinic_id, client_id,
                    clinician_id, answer, answered_at, loaded_at)
                select answer_id, alert_episode_id, clinic_id, client_id, clinician_id, answer,
                    answered_at, current_timestamp
                from judged_answers
                where reason is null
                """
            )
            conn.execute(
                """
                insert into alert_feedback_refused (answer_id, alert_episode_id, clinic_id,
                    clinician_id, answer, answered_at, reason, loaded_at)
                select answer_id,
                    -- an unknown episode may be an erased client's: its id is not kept
                    case when reason = 'unknown_episode' then null else alert_episode_id end,
                    clinic_id, clinician_id, answer, answered_at, reason, current_timestamp
                from judged_answers
                where reason is not null
                """
            )
            counts = conn.execute(
                """
                select
                    count(*) filter (where reason is null),
                    count(*) filter (where reason = 'unknown_episode'),
                    count(*) filter (where reason = 'not_their_client')
                from judged_answers
                """
            ).fetchall()[0]
            conn.execute("drop table judged_answers")
    finally:
        conn.unregister("incoming_answers")
    loaded, unknown, foreign = (int(x) for x in counts)
    n_unique = len({a.answer_id for a in items})
    return {
        "answers_read": len(items),
        "loaded": loaded,
        "refused": unknown + foreign,
        "refused_unknown_episode": unknown,
        "refused_not_their_client": foreign,
        "already_loaded": n_unique - loaded - unknown - foreign,
    }


def load_answers(paths: Paths, publish: bool = True) -> dict[str, Any]:
    """Load every answer waiting in `paths.answers` (exactly once), remove the files, and (with
    `publish`, when anything was loaded) publish the analyst snapshot so digests and reports
    see the answers. Call it holding the writer slot. Counts only in the result and the log."""
    from pipelines.warehouse import open_warehouse, publish_snapshot

    items = answers_inbox.pending(paths.answers)
    if not items:
        return {"answers_read": 0, "loaded": 0, "refused": 0, "already_loaded": 0}
    with open_warehouse(paths.warehouse) as conn:
        summary = load_into(conn, items)
    answers_inbox.remove(paths.answers, items)
    if summary["refused"]:
        log.warning(
            "%d answer(s) not loaded (see alert_feedback_refused): %d unknown episode, "
            "%d from a clinician who is not the episode's",
            summary["refused"],
            summary["refused_unknown_episode"],
            summary["refused_not_their_client"],
        )
    if publish and (summary["loaded"] or summary["refused"]):
        publish_snapshot(paths.warehouse, paths.snapshot)
        summary["snapshot"] = str(paths.snapshot)
    log.info("answers: %s", {k: v for k, v in summary.items() if k != "snapshot"})
    return summary


def erase_refused(conn: duckdb.DuckDBPyConnection, clinic_id: str, client_id: str) -> int:
    """Delete one client's refused answers (`forget`; inside the caller's transaction). Their
    loaded answers go with every other relation that has clinic_id and client_id columns.
    A refused answer may name an episode that no longer exists, so it is matched by the
    episode id's `clinic:client:` prefix (`sql/detect/flags.sql`)."""
    n = conn.execute(
        "delete from alert_feedback_refused where starts_with(alert_episode_id, ?)",
        [f"{clinic_id}:{client_id}:"],
    ).fetchall()[0][0]
    return int(n)
