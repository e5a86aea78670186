"""What each digest holds, read from the warehouse (or a snapshot) for one clinic and week:
each clinician's flagged and repaired clients with evidence, chart and guidance, and the data
team's summary of files, rows and feeds."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace as dc_replace
from typing import Any

import duckdb
import pandas as pd

from pipelines import registry
from pipelines.config import ClinicConfig
from pipelines.deliver.answer_links import followups, links_for
from pipelines.deliver.cells import suppress
from pipelines.deliver.charts import Chart, Series, format_total, trajectory_chart
from pipelines.deliver.digest.explain import evidence_of, explain, named_part, part_that_fell
from pipelines.deliver.digest.model import (
    SEVERITY_RANK,
    ClinicianDigest,
    DataTeamSummary,
    FlaggedClient,
    RepairedClient,
    Week,
)
from pipelines.deliver.guidance import categories_for, guidance_for
from pipelines.deliver.outcomes import answer_rate_text
from pipelines.settings import AnswerSettings, answer_settings_from_env


def _week_flags(conn: duckdb.DuckDBPyConnection, clinic_id: str, week: Week) -> pd.DataFrame:
    return conn.execute(
        """
        with week_flags as (
            select *
            from flags
            where clinic_id = ?
              and session_date >= ?
              and session_date < ?
        ),
        episodes as (
            select
                alert_episode_id,
                status as episode_status,
                opened_date
            from alert_episodes
        ),
        joined as (
            select
                f.client_id,
                f.clinician_id,
                f.session_number,
                f.instrument,
                f.severity,
                f.reasons,
                f.alert_episode_id,
                f.is_new or (e.opened_date >= ? and e.opened_date < ?) as is_new,
                f.alert_kind,
                f.total,
                f.previous_total,
                f.baseline_total,
                f.delta_previous,
                f.delta_baseline,
                f.reliable_change,
                f.cutoff,
                f.fallen_part,
                f.evidence
            from week_flags as f
            left join episodes as e using (alert_episode_id)
        )
        select * from joined
        order by clinician_id, client_id, session_number, instrument
        """,
        [clinic_id, week.start, week.end, week.start, week.end],
    ).df()


def _week_repairs(conn: duckdb.DuckDBPyConnection, clinic_id: str, week: Week) -> pd.DataFrame:
    return conn.execute(
        """
        with repaired as (
            select
                client_id,
                clinician_id,
                instrument,
                opened_session,
                closed_session
            from alert_episodes
            where clinic_id = ?
              and status = 'repaired'
              and closed_date >= ?
              and closed_date < ?
        )
        select * from repaired
        order by clinician_id, client_id, instrument
        """,
        [clinic_id, week.start, week.end],
    ).df()


def _history(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, clients: list[str], week: Week
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measurements and flagged sessions of the given clients dated before the week's end."""
    items = ", ".join(registry.ITEM_COLUMNS)
    measures = conn.execute(
        f"""
        select client_id, session_number, instrument, total, {items}
        from measurements
        where clinic_id = ?
          and list_contains(?, client_id)
          and session_date < ?
        order by client_id, instrument, session_number
        """,  # noqa: S608 - column names are constants
        [clinic_id, clients, week.end],
    ).df()
    flagged = conn.execute(
        """
        select client_id, instrument, session_number
        from flags
        where clinic_id = ?
          and list_contains(?, client_id)
          and session_date < ?
        """,
        [clinic_id, clients, week.end],
    ).df()
    return measures, flagged


def _chart_for(
    client_hist: pd.DataFrame, client_flags: pd.DataFrame, alliance_code: str
) -> Chart | None:
    def series(code: str) -> Series | None:
        s = client_hist[client_hist.instrument == code]
        if s.empty:
            return None
        marked = client_flags[client_flags.instrument == code].session_number
        return Series(
            instrument=code,
            sessions=s.session_number.astype(int).tolist(),
            totals=s.total.astype(float).tolist(),
            flagged_sessions=marked.astype(int).tolist(),
        )

    counts = client_hist.instrument.value_counts()
    symptom_codes = [c for c in counts.index if c in registry.SYMPTOM_INSTRUMENTS]
    symptom = series(str(symptom_codes[0])) if symptom_codes else None
    return trajectory_chart(series(alliance_code), symptom)


def _flagged_client(
    client_id: str, rows: pd.DataFrame, hist: pd.DataFrame, all_flags: pd.DataFrame
) -> FlaggedClient:
    rows = rows.assign(rank=rows.severity.map(SEVERITY_RANK).fillna(3))
    # the latest flag of each instrument this week; the most severe (then latest) leads
    latest = rows.sort_values("session_number").groupby("instrument", sort=False).tail(1)
    latest = latest.sort_values(["rank", "session_number"], ascending=[True, False])
    lead = latest.iloc[0]
    has_symptom_flag = bool(latest.instrument.isin(registry.SYMPTOM_INSTRUMENTS).any())
    why = tuple(explain(f, hist, with_symptoms=not has_symptom_flag) for _, f in latest.iterrows())
    reasons = tuple(sorted({r for rs in rows.reasons for r in rs}))
    cats: list[Any] = []
    for _, f in latest.iterrows():
        construct = registry.get(str(f.instrument)).construct
        part = named_part(set(f.reasons), f.fallen_part)
        ev = evidence_of(f.evidence)
        looked = "delta_bond" in ev or "delta_goal_task" in ev
        if part is None and not looked and construct == "alliance":
            part = part_that_fell(
                hist[hist.instrument == f.instrument], str(f.instrument), int(f.session_number)
            )
        cats.extend(categories_for(f.reasons, part, construct))
    alliance_codes = [c for c in latest.instrument if c in registry.ALLIANCE_INSTRUMENTS]
    alliance_code = alliance_codes[0] if alliance_codes else registry.ALLIANCE_INSTRUMENTS[0]
    if not alliance_codes:
        present = [c for c in registry.ALLIANCE_INSTRUMENTS if (hist.instrument == c).any()]
        alliance_code = present[0] if present else alliance_code
    return FlaggedClient(
        client_id=client_id,
        severity=str(lead.severity),
        status=(
            "new"
            if bool(rows.is_new.fillna(False).any())
            else "worsened"
            if bool((rows.alert_kind == "escalated").any())
            else "ongoing"
        ),
        instruments=tuple(latest.instrument.astype(str)),
        reasons=reasons,
        why=why,
        guidance=tuple(guidance_for(cats)),
        chart=_chart_for(hist, all_flags, alliance_code),
        last_session=int(rows.session_number.max()),
        alert_episode_id=str(lead.alert_episode_id),
    )


def _repaired_client(row: pd.Series, hist: pd.DataFrame) -> RepairedClient:
    code = str(row.instrument)
    s = hist[(hist.instrument == code) & (hist.session_number <= int(row.closed_session))]
    now = f"; {code} is {format_total(code, float(s.total.iloc[-1]))}" if not s.empty else ""
    return RepairedClient(
        client_id=str(row.client_id),
        instrument=code,
        text=(
            f"{code} back to the client's own baseline at session {int(row.closed_session)} "
            f"(flagged since session {int(row.opened_session)}){now}"
        ),
    )


def select_clinician_digests(
    conn: duckdb.DuckDBPyConnection,
    cfg: ClinicConfig,
    week: Week,
    skip: frozenset[str] = frozenset(),
    answer_settings: AnswerSettings | None = None,
) -> list[ClinicianDigest]:
    """One digest per clinician of the clinic who has a client flagged or repaired in the week,
    plus an all-clear digest for every other known clinician when the clinic asks for it;
    none for the clinicians in `skip` (their digest was sent: nothing to draw again).

    A clinician's digest holds only clients flagged at a session of theirs in the week, each
    with the three answer links (`answer_settings`, default from the environment; none when
    not set up), and the answers they gave since the last digest with what followed."""
    links = answer_settings if answer_settings is not None else answer_settings_from_env()
    answered = followups(conn, cfg.clinic_id, cfg.timezone, week.start, week.end)
    flags = _week_flags(conn, cfg.clinic_id, week)
    repairs = _week_repairs(conn, cfg.clinic_id, week)
    clients = sorted(set(flags.client_id) | set(repairs.client_id))
    hist, all_flags = _history(conn, cfg.clinic_id, clients, week)
    hist_by_client = dict(tuple(hist.groupby("client_id"))) if not hist.empty else {}
    flags_by_client = dict(tuple(all_flags.groupby("client_id"))) if not all_flags.empty else {}
    empty_hist = hist.iloc[0:0]
    empty_flags = all_flags.iloc[0:0]

    clinicians = set(flags.clinician_id) | set(repairs.clinician_id) | set(answered)
    if cfg.notifications.send_all_clear:
        seen = conn.execute(
            "select distinct clinician_id from measurements "
            "where clinic_id = ? and session_date >= ? and session_date < ?",
            [cfg.clinic_id, week.start, week.end],
        ).fetchall()
        clinicians |= set(cfg.clinicians) | {c for (c,) in seen}

    digests: list[ClinicianDigest] = []
    for clinician in sorted(clinicians - skip):
        mine = flags[flags.clinician_id == clinician]
        flagged = [
            _flagged_client(
                str(client),
                rows,
                hist_by_client.get(client, empty_hist),
                flags_by_client.get(client, empty_flags),
            )
            for client, rows in mine.groupby("client_id", sort=True)
        ]
        flagged = [
            dc_replace(c, answer_links=links_for(links, c.alert_episode_id, clinician, week.end))
            for c in flagged
        ]
        flagged.sort(
            key=lambda c: (SEVERITY_RANK.get(c.severity, 3), c.status != "new", c.client_id)
        )
        repaired = [
            _repaired_client(r, hist_by_client.get(r.client_id, empty_hist))
            for _, r in repairs[repairs.clinician_id == clinician].iterrows()
        ]
        digest = ClinicianDigest(
            clinic_id=cfg.clinic_id,
            clinician_id=str(clinician),
            week=week,
            flagged=tuple(flagged),
            repaired=tuple(repaired),
            answers=answered.get(str(clinician), ()),
        )
        if digest.is_all_clear and not cfg.notifications.send_all_clear:
            continue
        digests.append(digest)
    return digests


def build_data_team_summary(
    conn: duckdb.DuckDBPyConnection, cfg: ClinicConfig, week: Week
) -> DataTeamSummary:
    """Files received and rejected in the week (by the clinic's local date of receipt), rows
    quarantined by reason, feeds with no file within the clinic's cadence, and new flags. An
    attempt not judged and tried again since counts as no file (`ingest_attempts.retried`)."""
    files = conn.execute(
        """
        with received as (
            select
                *,
                cast(timezone(?, received_at) as date) as received_date
            from ingest_attempts
            where clinic_id = ?
              and not retried
        ),
        in_week as (
            select *
            from received
            where received_date >= ?
              and received_date < ?
        )
        select
            status,
            error,
            sha256,
            rows_in,
            rows_loaded,
            rows_quarantined,
            rows_duplicate
        from in_week
        """,
        [cfg.timezone, cfg.clinic_id, week.start, week.end],
    ).df()
    by_status = files.status.value_counts().sort_index()
    rejected = files[files.status == "rejected"].error.fillna("unknown")
    reject_codes = rejected.str.split(":", n=1).str[0].str.strip().value_counts().sort_index()
    quarantine = conn.execute(
        """
        with week_rows as (
            select reasons
            from quarantined_rows
            where clinic_id = ?
              and list_contains(?, sha256)
        ),
        numbered as (
            select
                row_number() over () as row_id,
                unnest(reasons) as reason_text
            from week_rows
        ),
        codes as (
            -- the stable code before the colon; a row counts once per code
            select distinct
                row_id,
                trim(split_part(reason_text, ':', 1)) as reason
            from numbered
        ),
        per_code as (
            select
                reason,
                count(*) as n_rows
            from codes
            group by reason
        )
        select * from per_code
        order by n_rows desc, reason
        """,
        [cfg.clinic_id, files.sha256.tolist()],
    ).fetchall()
    last = conn.execute(
        """
        with received as (
            select
                coalesce(dataset, 'measures') as dataset,
                max(cast(timezone(?, received_at) as date)) as last_received_date
            from ingest_files
            where clinic_id = ?
              and cast(timezone(?, received_at) as date) < ?
            group by 1
        )
        select * from received
        """,
        [cfg.timezone, cfg.clinic_id, cfg.timezone, week.end],
    ).fetchall()
    last_by_dataset = dict(last)
    stale: list[str] = []
    for dataset in ("measures", "appointments"):
        seen = last_by_dataset.get(dataset)
        if seen is None:
            if dataset == "measures":
                stale.append("measures: no file received yet")
            continue
        age = (week.end - seen).days
        if age > cfg.cadence_days:
            stale.append(
                f"{dataset}: last file received {seen.isoformat()}, {age} days ago "
                f"(expected every {cfg.cadence_days} days)"
            )
    n_new = conn.execute(
        """
        select count(distinct client_id)
        from flags
        where clinic_id = ?
          and is_new
          and session_date >= ?
          and session_date < ?
        """,
        [cfg.clinic_id, week.start, week.end],
    ).fetchall()[0][0]
    return DataTeamSummary(
        clinic_id=cfg.clinic_id,
        week=week,
        files_received=len(files),
        files_by_status=tuple((str(k), int(v)) for k, v in by_status.items()),
        rejected_by_reason=tuple((str(k), int(v)) for k, v in reject_codes.items()),
        rows_in=suppress(int(files.rows_in.sum())),
        rows_loaded=suppress(int(files.rows_loaded.sum())),
        rows_quarantined=suppress(int(files.rows_quarantined.sum())),
        rows_duplicate=suppress(int(files.rows_duplicate.sum())),
        quarantined_by_reason=tuple((str(r), suppress(int(n))) for r, n in quarantine),
        stale_feeds=tuple(stale),
        clients_newly_flagged=suppress(int(n_new)),
        answer_rate=answer_rate_text(
            conn, cfg.clinic_id, week.end - dt.timedelta(days=28), week.end
        ),
        ceiling_note=ceiling_note(conn, cfg, week),
        excluded_sessions=excluded_session_lines(conn, cfg.clinic_id),
    )


# lines of the data team's summary for sessions left out of detection; the rest are counted
EXCLUDED_LINES = 20


def excluded_session_lines(conn: duckdb.DuckDBPyConnection, clinic_id: str) -> tuple[str, ...]:
    """The clinic's alliance sessions that detection leaves out (detect_excluded_sessions, as the
    last detection found them), one line each: the pseudonymous client code, the session and
    where it was delivered, never a value from the file (no dates); the full reasons, with the
    dates, are in the warehouse relation. The first EXCLUDED_LINES, then a count of the rest."""
    rows = conn.execute(
        """
        select
            client_id,
            episode_id,
            instrument,
            session_number,
            later_session_number,
            source_file,
            source_line
        from detect_excluded_sessions
        where clinic_id = ?
        order by client_id, episode_id, instrument, session_number
        """,
        [clinic_id],
    ).fetchall()
    lines = [
        f"client {client}"
        + (f", treatment episode {episode}" if episode else "")
        + f": {code} session {number} is dated after session {later} of the same series"
        + (f" ({file}, line {line})" if file else "")
        for client, episode, code, number, later, file, line in rows[:EXCLUDED_LINES]
    ]
    if len(rows) > EXCLUDED_LINES:
        lines.append(
            f"and {len(rows) - EXCLUDED_LINES} more (warehouse relation detect_excluded_sessions)"
        )
    return tuple(lines)


def ceiling_note(conn: duckdb.DuckDBPyConnection, cfg: ClinicConfig, week: Week) -> str | None:
    """Why a clinic with no alert budget got fewer, stronger alerts: the weeks overlapping
    `week` whose threshold its alert ceiling raised (detect_calibration.budget_threshold), per
    instrument; None when the ceiling did not bind (or the clinic set a budget, whose thresholds
    are its own choice)."""
    from pipelines.detect.ruptures import DetectParams

    params = DetectParams().with_thresholds(cfg.thresholds)
    if params.alert_budget is not None or params.alert_ceiling is None:
        return None
    rows = conn.execute(
        """
        select instrument, max(budget_threshold)
        from detect_calibration
        where clinic_id = ?
          and budget_threshold is not null
          and week_start > ? - interval 7 day
          and week_start < ?
        group by instrument
        order by instrument
        """,
        [cfg.clinic_id, week.start, week.end],
    ).fetchall()
    if not rows:
        return None
    raised = ", ".join(f"{code} to {threshold:.2f}" for code, threshold in rows)
    return (
        f"Alert ceiling: flags had run above {100 * params.alert_ceiling:g}% of alliance "
        f"sessions, so the alert threshold was raised ({raised}; default "
        f"{params.flag_evidence:g}) until the rate falls back; only the stronger drops were "
        "flagged. thresholds.alert_ceiling in the clinic's config sets the ceiling (false: off)"
    )
