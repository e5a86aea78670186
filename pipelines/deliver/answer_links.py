"""What the answers add to a clinician's digest and notice: the three answer links of each
flagged client, and the answers given since the last digest with the scores that followed
("You held a repair conversation with C0046 on 2 Dec; SRS since: 36.1, 37.4 (back to their
usual)"). `pipelines.deliver.digest` and `pipelines.deliver.alerts` call these; they only read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from pipelines.answers.tokens import Answer, answer_links
from pipelines.deliver.charts import format_total
from pipelines.settings import AnswerSettings


@dataclass(frozen=True)
class AnswerFollowup:
    """One answer a clinician gave since the last digest, in words."""

    client_id: str
    text: str

    @property
    def parts(self) -> tuple[str, str, str]:
        """The text around the client code (the HTML digest sets the code in bold)."""
        return self.text.partition(self.client_id)


def links_for(
    settings: AnswerSettings, alert_episode_id: str, clinician_id: str, valid_from: dt.date
) -> tuple[tuple[str, str], ...]:
    """(label, URL) of the three answers, valid `settings.link_days` from `valid_from`; none
    when answer links are not set up (no secret or no base URL)."""
    if not settings.enabled or settings.base_url is None:
        return ()
    expires = valid_from + dt.timedelta(days=settings.link_days)
    return answer_links(
        alert_episode_id, clinician_id, expires, settings.secrets[0], settings.base_url
    )


def has_relation(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether `conn` has the table or view `name` (a snapshot published before migration 019
    has no answers yet)."""
    return bool(
        conn.execute(
            "select count(*) from information_schema.tables "
            "where table_name = ? and table_schema = 'main'",
            [name],
        ).fetchall()[0][0]
    )


_FOLLOWUPS_SQL = """
with answered as (
    select
        alert_episode_id,
        arg_max(answer, answered_at) as answer,
        cast(timezone($tz, max(answered_at)) as date) as answered_date
    from alert_feedback
    where clinic_id = $clinic
    group by alert_episode_id
),

recent as (
    -- answered since the last digest (its run date is this week's start)
    select
        a.*,
        e.client_id,
        e.clinician_id,
        e.episode_id,
        e.instrument,
        e.status
    from answered as a
    inner join alert_episodes as e on a.alert_episode_id = e.alert_episode_id
    where a.answered_date >= $week_start
      and a.answered_date <= $week_end
),

since as (
    -- the episode's instrument at sessions from the answer's date to the week's end
    select
        r.alert_episode_id,
        list(m.total order by m.session_number) filter (where m.total is not null) as totals
    from recent as r
    left join measurements as m
        on m.clinic_id = $clinic
        and m.client_id = r.client_id
        and coalesce(m.episode_id, '') = r.episode_id
        and m.instrument = r.instrument
        and m.session_date >= r.answered_date
        and m.session_date < $week_end
    group by r.alert_episode_id
)

select
    r.clinician_id,
    r.client_id,
    r.instrument,
    r.answer,
    r.answered_date,
    r.status,
    coalesce(s.totals, []) as totals
from recent as r
left join since as s using (alert_episode_id)
order by r.clinician_id, r.answered_date, r.client_id
"""


def _day(d: dt.date) -> str:
    return f"{d.day} {d:%b}"


def followup_text(
    answer: str,
    client_id: str,
    answered: dt.date,
    instrument: str,
    totals: list[float],
    status: str,
) -> str:
    """The sentence a digest shows for one answer."""
    a = Answer(answer)
    if a is Answer.TALKED:
        head = f"You held a repair conversation with {client_id} on {_day(answered)}"
    elif a is Answer.NOT_YET:
        head = f"On {_day(answered)} you marked {client_id}'s alert a rupture not talked about yet"
    else:
        head = f"On {_day(answered)} you marked {client_id}'s alert not a rupture"
    if not totals:
        return f"{head}; no {instrument} session since yet"
    scores = ", ".join(format_total(instrument, float(t)) for t in totals)
    where = {
        "repaired": "back to their usual",
        "ended": "no longer attending",
    }.get(status, "still below their usual")
    return f"{head}; {instrument} since: {scores} ({where})"


def followups(
    conn: duckdb.DuckDBPyConnection,
    clinic_id: str,
    timezone: str,
    week_start: dt.date,
    week_end: dt.date,
) -> dict[str, tuple[AnswerFollowup, ...]]:
    """clinician_id -> the answers they gave from `week_start` (the last digest's run date)
    through `week_end` (this one's), the last answer of each episode, in the clinic's dates."""
    if not has_relation(conn, "alert_feedback"):
        return {}
    rows = conn.execute(
        _FOLLOWUPS_SQL,
        {"clinic": clinic_id, "tz": timezone, "week_start": week_start, "week_end": week_end},
    ).fetchall()
    out: dict[str, list[AnswerFollowup]] = {}
    for clinician, client, instrument, answer, answered, status, totals in rows:
        text = followup_text(answer, client, answered, instrument, list(totals), status)
        out.setdefault(str(clinician), []).append(AnswerFollowup(str(client), text))
    return {k: tuple(v) for k, v in out.items()}
