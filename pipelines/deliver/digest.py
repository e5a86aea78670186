"""Weekly digests: one per clinician (their flagged clients, with evidence and repair guidance)
and one data-quality summary per clinic data team; written to an outbox, sent over SMTP.

A run for date D covers sessions dated D-7 .. D-1 (``Week``). For each configured clinic it

* selects, per clinician, only that clinician's clients flagged in the week (``new`` when the
  alert episode opened that week, else ``ongoing``) and the episodes repaired that week;
* explains each flag in plain words with the numbers, draws a small trajectory chart and adds
  at most two repair-conversation prompts (``pipelines.deliver.guidance``);
* renders an email (plain text + HTML with the chart inline by Content-ID) and writes
  ``OUT/<clinic_id>/<week_start>/<clinician_id>.{html,txt,eml}`` (the .html file embeds the
  chart as a data URI so it opens anywhere);
* sends it where SMTP is configured and the clinic config has the clinician's address, and
  records every delivery in ``digest_deliveries``: a digest already sent is never sent again.

Clients appear by pseudonymous code only; every value is HTML-escaped by the template engine;
counts in the data-team summary below ``SMALL_CELL`` are shown as "<5".
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import json
import math
import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from email.message import EmailMessage
from html import escape as escape_html
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import pandas as pd

from pipelines import registry, settings
from pipelines.config import ClinicConfig, load_clinic_configs
from pipelines.deliver.answer_links import AnswerFollowup, followups, links_for
from pipelines.deliver.cells import SMALL_CELL, suppress
from pipelines.deliver.charts import Chart, Series, format_total, trajectory_chart
from pipelines.deliver.deliveries import Entry, Journal, ledger_state, merge, read_journals, record
from pipelines.deliver.guidance import Guidance, categories_for, guidance_for
from pipelines.deliver.mailer import DEFAULT_SENDER, SmtpSettings, send
from pipelines.deliver.outcomes import answer_rate_text
from pipelines.settings import AnswerSettings, answer_settings_from_env

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


DATA_TEAM = ""  # clinician_id of the data-team summary in the ledger


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Week:
    """Sessions dated start <= session_date < end; end is the run date."""

    start: dt.date
    end: dt.date

    @classmethod
    def before(cls, as_of: dt.date) -> Week:
        return cls(start=as_of - dt.timedelta(days=7), end=as_of)

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()} to {self.last_day.isoformat()}"


@dataclass(frozen=True)
class FlaggedClient:
    client_id: str
    severity: str  # high | medium | low
    status: str  # new | ongoing
    instruments: tuple[str, ...]
    reasons: tuple[str, ...]
    why: tuple[str, ...]
    guidance: tuple[Guidance, ...]
    chart: Chart | None
    last_session: int
    # (label, URL) of the three one-click answers (pipelines.deliver.answer_links); () when not set up
    answer_links: tuple[tuple[str, str], ...] = ()
    alert_episode_id: str = ""


@dataclass(frozen=True)
class RepairedClient:
    client_id: str
    instrument: str
    text: str


@dataclass(frozen=True)
class ClinicianDigest:
    clinic_id: str
    clinician_id: str
    week: Week
    flagged: tuple[FlaggedClient, ...]
    repaired: tuple[RepairedClient, ...]
    answers: tuple[AnswerFollowup, ...] = ()  # answers given since the last digest

    @property
    def new(self) -> tuple[FlaggedClient, ...]:
        return tuple(c for c in self.flagged if c.status == "new")

    @property
    def ongoing(self) -> tuple[FlaggedClient, ...]:
        """Flagged before this week and still flagged, worsened ones included."""
        return tuple(c for c in self.flagged if c.status in ("ongoing", "worsened"))

    @property
    def worsened(self) -> tuple[FlaggedClient, ...]:
        """Episodes whose severity escalated this week (a re-alert)."""
        return tuple(c for c in self.flagged if c.status == "worsened")

    @property
    def is_all_clear(self) -> bool:
        return not self.flagged and not self.repaired and not self.answers


@dataclass(frozen=True)
class DataTeamSummary:
    clinic_id: str
    week: Week
    files_received: int
    files_by_status: tuple[tuple[str, int], ...]
    rejected_by_reason: tuple[tuple[str, int], ...]
    rows_in: str
    rows_loaded: str
    rows_quarantined: str
    rows_duplicate: str
    quarantined_by_reason: tuple[tuple[str, str], ...]
    stale_feeds: tuple[str, ...]
    clients_newly_flagged: str
    config_note: str | None = None
    answer_rate: str | None = None  # clinicians' answers to the last four weeks' alerts


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html_email: str  # charts referenced as cid:
    html_file: str  # charts embedded as data: URIs
    images: tuple[tuple[str, bytes], ...]  # (content id without <>, png)


@dataclass(frozen=True)
class Delivery:
    clinic_id: str
    clinician_id: str  # '' for the data-team summary
    kind: str  # clinician | data_team
    status: str  # sent | failed | written | already_sent
    attempts: int
    outbox_path: Path | None
    n_clients: int
    error: str | None = None


@dataclass
class DigestRunSummary:
    """What a run did; `deliveries` has one row per digest due (sent, written, failed, skipped)."""

    as_of: dt.date
    week_start: dt.date
    deliveries: list[Delivery] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)
    # clinics with flags in the week but no valid config: nothing can be addressed or rendered
    # for them (no clinician addresses, no timezone), so they are named here, not dropped
    unconfigured_clinics: list[str] = field(default_factory=list)

    def count(self, status: str, kind: str | None = None) -> int:
        return sum(
            1 for d in self.deliveries if d.status == status and (kind is None or d.kind == kind)
        )

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def written(self) -> int:
        return self.count("written")

    @property
    def already_sent(self) -> int:
        return self.count("already_sent")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able counts (for an Airflow XCom or a log line): no addresses, no client codes."""
        return {
            "as_of": self.as_of.isoformat(),
            "week_start": self.week_start.isoformat(),
            "due": len(self.deliveries),
            "sent": self.sent,
            "written": self.written,
            "failed": self.failed,
            "already_sent": self.already_sent,
            "clinician_digests": sum(1 for d in self.deliveries if d.kind == "clinician"),
            "data_team_summaries": sum(1 for d in self.deliveries if d.kind == "data_team"),
            "config_errors": len(self.config_errors),
            "unconfigured_clinics": list(self.unconfigured_clinics),
        }

    def line(self) -> str:
        return (
            f"digests for sessions {Week.before(self.as_of).label}: "
            f"{len(self.deliveries)} due, {self.sent} sent, {self.written} written only, "
            f"{self.failed} failed, {self.already_sent} already sent"
        )


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


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


def _fallen_part(series: pd.DataFrame, instrument: str, session: int) -> str | None:
    """The subscale (or SRS item) that fell most between the previous session and `session`."""
    ins = registry.get(instrument)
    if not ins.subscales:
        return None
    now = series[series.session_number == session]
    before = series[series.session_number < session].tail(1)
    if now.empty or before.empty:
        return None
    deltas = {
        part: float(
            now[[f"item_{i}" for i in idx]].to_numpy().mean()
            - before[[f"item_{i}" for i in idx]].to_numpy().mean()
        )
        for part, idx in ins.subscales.items()
    }
    part, delta = min(deltas.items(), key=lambda kv: kv[1])
    ties = [p for p, d in deltas.items() if abs(d - delta) < 1e-9]
    # a uniform drop has no part that "fell most"; saying one would be invented evidence
    return part if delta < 0 and len(ties) == 1 else None


def _named_part(reasons: set[str], fallen_part: Any) -> str | None:
    """The fallen part as detection recorded it (fallen_part, else the bond/goal-task rule)."""
    if _present(fallen_part):
        return str(fallen_part)
    if "bond_drop" in reasons:
        return "bond"
    if "goal_task_drop" in reasons:
        return "goal_task"
    return None


# What the detector's parts mean on each alliance instrument (sql/detect/rupture_signals.sql:
# bond = SRS relationship item / WAI-SR bond subscale; goal_task = SRS goals + approach items /
# WAI-SR goal + task subscales; overall = both fell alike).
_PART_NAMES: dict[str, dict[str, str]] = {
    "SRS": {
        "bond": "the relationship item fell most",
        "goal_task": "the goals and approach items fell most",
        "overall": "every item fell alike",
    },
    "WAI-SR": {
        "bond": "the bond items fell most",
        "goal_task": "the goal and task items fell most",
        "overall": "bond, goal and task items fell alike",
    },
}


def _evidence(value: Any) -> dict[str, Any]:
    """The flag's evidence JSON as a dict ({} when absent or unreadable)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _part_phrase(instrument: str, part: str, evidence: dict[str, Any]) -> str:
    """'the relationship item fell most (4.6, usually 7.1)' from the fallen part and evidence."""
    ins = registry.get(instrument)
    named = _PART_NAMES.get(instrument, {})
    if part in named:
        phrase = named[part]
    elif instrument == "SRS" and part in ins.subscales:
        phrase = f"the {ins.item_labels[ins.subscales[part][0] - 1]} item fell most"
    else:
        phrase = f"the {part.replace('_', ' ')} items fell most"
    score, usual = evidence.get(f"{part}_score"), evidence.get(f"baseline_{part}")
    if isinstance(score, int | float) and isinstance(usual, int | float):
        digits = 2 if ins.scoring == "mean" else 1
        phrase += f" ({score:.{digits}f}, usually {usual:.{digits}f})"
    return phrase


def _worse_change(instrument: str, before: float, after: float) -> float:
    """How much worse `after` is than `before` on the instrument's own direction (> 0: worse)."""
    ins = registry.get(instrument)
    return before - after if ins.direction == "higher_better" else after - before


def _symptom_detail(
    client_hist: pd.DataFrame, session: int, named: Sequence[str] | None = None
) -> str | None:
    """'PHQ-9 rose from 9 to 16' for the symptom measure that worsened most up to `session`
    (among `named`, the instruments detection found deteriorated, when it says)."""
    best: tuple[float, str] | None = None
    for code in named or registry.SYMPTOM_INSTRUMENTS:
        if code not in registry.SYMPTOM_INSTRUMENTS:
            continue
        s = client_hist[(client_hist.instrument == code) & (client_hist.session_number <= session)]
        if len(s) < 2:
            continue
        before, after = float(s.total.iloc[-2]), float(s.total.iloc[-1])
        worse = _worse_change(code, before, after)
        if worse <= 0:
            continue
        verb = "fell" if registry.get(code).direction == "higher_better" else "rose"
        text = f"{code} {verb} from {format_total(code, before)} to {format_total(code, after)}"
        score = worse / registry.get(code).reliable_change
        if best is None or score > best[0]:
            best = (score, text)
    return best[1] if best else None


def explain(flag: pd.Series, client_hist: pd.DataFrame, with_symptoms: bool = True) -> str:
    """One flag in plain words with the numbers, e.g. 'SRS fell from 38.5 to 33.0, below the 36
    cutoff; the relationship item fell most'."""
    code = str(flag.instrument)
    ins = registry.get(code)
    reasons = set(flag.reasons)
    fmt = lambda v: format_total(code, float(v))  # noqa: E731
    cutoff = float(flag.cutoff) if _present(flag.cutoff) else ins.cutoff
    rc = float(flag.reliable_change) if _present(flag.reliable_change) else ins.reliable_change
    verb = "fell" if ins.direction == "higher_better" else "rose"
    total = float(flag.total) if _present(flag.total) else None
    prev = float(flag.previous_total) if _present(flag.previous_total) else None
    base = float(flag.baseline_total) if _present(flag.baseline_total) else None

    if total is not None and prev is not None and _worse_change(code, prev, total) > 0:
        head = f"{code} {verb} from {fmt(prev)} to {fmt(total)}"
    elif total is not None and base is not None and _worse_change(code, base, total) > 0:
        head = f"{code} {verb} to {fmt(total)} from the client's usual {fmt(base)}"
        base = None  # already said
    elif total is not None:
        head = f"{code} was {fmt(total)}"
    else:
        head = f"{code} was flagged"
    if total is not None and ins.is_concern(total):
        side = "below" if ins.direction == "higher_better" else "at or above"
        head += f", {side} the {cutoff:g} cutoff"

    clauses: list[str] = []
    if "reliable_drop_previous" in reasons and prev is not None and total is not None:
        clauses.append(
            f"a change of {fmt(abs(total - prev))}, more than the {rc:.2f} "
            "that counts as reliable change"
            if ins.scoring == "mean"
            else f"a change of {fmt(abs(total - prev))}, more than the {rc:.1f} points "
            "that count as reliable change"
        )
    if "reliable_drop_baseline" in reasons and base is not None and total is not None:
        clauses.append(
            f"{fmt(abs(_worse_change(code, base, total)))} worse than the client's own "
            f"baseline of {fmt(base)}"
        )
    evidence = _evidence(flag.evidence)
    if "deflection" in reasons:
        sds = evidence.get("deflection_sd")
        clauses.append(
            f"a dip of more than {sds:g} SD of the client's own scores"
            if isinstance(sds, int | float)
            else "a sharp dip against the client's own history"
        )
    if "calibrated_drop" in reasons:
        clauses.append(
            "a drop larger than this client's usual ups and downs from session to session"
        )
    if "sustained_decline" in reasons:
        n = evidence.get("decline_sessions")
        clauses.append(
            f"a steady decline over the last {n} sessions"
            if isinstance(n, int)
            else "a steady decline over the last sessions"
        )
    part = _named_part(reasons, flag.fallen_part)
    # when detection looked at the parts (its evidence has them) and named none, none fell
    # clearly; only older flags without that evidence get the part worked out here
    looked = "delta_bond" in evidence or "delta_goal_task" in evidence
    if part is None and not looked and ins.construct == "alliance" and total is not None:
        series = client_hist[client_hist.instrument == code]
        part = _fallen_part(series, code, int(flag.session_number))
    if part and ins.construct == "alliance":
        clauses.append(_part_phrase(code, part, evidence))
    if "disengagement" in reasons:
        clauses.append("a cancellation, no-show or skipped measure followed the drop")
    if "symptom_deterioration" in reasons and ins.construct == "alliance" and with_symptoms:
        named = evidence.get("deteriorated_instruments")
        detail = _symptom_detail(
            client_hist, int(flag.session_number), named if isinstance(named, list) else None
        )
        clauses.append(
            f"symptoms worsened at the same time ({detail})"
            if detail
            else "symptoms worsened at the same time"
        )
    return head + (("; " + "; ".join(clauses)) if clauses else "")


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
        part = _named_part(set(f.reasons), f.fallen_part)
        ev = _evidence(f.evidence)
        looked = "delta_bond" in ev or "delta_goal_task" in ev
        if part is None and not looked and construct == "alliance":
            part = _fallen_part(
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
    )


def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.FileSystemLoader(_TEMPLATES)
    html = jinja2.Environment(
        loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    text = jinja2.Environment(
        loader=loader,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return html, text


_HTML_ENV, _TEXT_ENV = _environments()


# RFC 5322 allows 998 characters on a header line (78 is a recommendation)
_HEADERS_UNFOLDED = email.policy.default.clone(max_line_length=998)


def _subject(d: ClinicianDigest) -> str:
    """Names the clinic (a clinician working at two clinics gets two digests and tells them
    apart), then the counts; never a client code."""
    head = f"Alliance Watch {d.clinic_id}"
    if d.is_all_clear:
        return f"{head}: all clear (week of {d.week.start.isoformat()})"
    parts = [f"{len(d.new)} new", f"{len(d.ongoing)} ongoing"]
    if d.repaired:
        parts.append(f"{len(d.repaired)} repaired")
    if d.answers:
        parts.append(f"{len(d.answers)} answered")
    return f"{head}: {', '.join(parts)} (week of {d.week.start.isoformat()})"


def render_clinician_digest(d: ClinicianDigest) -> Rendered:
    """The digest as email parts: plain text, HTML with cid: images, HTML with data: images."""
    charted = [c for c in d.flagged if c.chart is not None]
    tag = hashlib.sha256(f"{d.clinic_id}/{d.clinician_id}/{d.week.start}".encode()).hexdigest()[:12]
    cids = {c.client_id: f"chart{i}.{tag}@alliance-watch" for i, c in enumerate(charted)}
    images = tuple((cids[c.client_id], c.chart.png) for c in charted if c.chart is not None)
    data_uris = {
        c.client_id: "data:image/png;base64," + base64.b64encode(c.chart.png).decode("ascii")
        for c in charted
        if c.chart is not None
    }
    subject = _subject(d)
    ctx: dict[str, Any] = {"d": d, "subject": subject}
    html_email = _HTML_ENV.get_template("clinician.html.j2").render(
        **ctx, image_src={k: f"cid:{v}" for k, v in cids.items()}
    )
    html_file = _HTML_ENV.get_template("clinician.html.j2").render(**ctx, image_src=data_uris)
    text = _TEXT_ENV.get_template("clinician.txt.j2").render(**ctx)
    return Rendered(subject, text, html_email, html_file, images)


def render_data_team_summary(s: DataTeamSummary) -> Rendered:
    subject = f"Alliance Watch data: {s.clinic_id} (week of {s.week.start.isoformat()})"
    ctx: dict[str, Any] = {"s": s, "subject": subject, "small_cell": SMALL_CELL}
    html = _HTML_ENV.get_template("data_team.html.j2").render(**ctx)
    text = _TEXT_ENV.get_template("data_team.txt.j2").render(**ctx)
    return Rendered(subject, text, html, html, ())


def build_message(r: Rendered, sender: str, recipient: str | None) -> EmailMessage:
    """A multipart/alternative email (text, then HTML with the charts as related parts)."""
    msg = EmailMessage()
    msg["Subject"] = r.subject
    msg["From"] = sender
    if recipient:
        msg["To"] = recipient
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain="alliance-watch.local")
    msg.set_content(r.text)
    msg.add_alternative(r.html_email, subtype="html")
    html_part = msg.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    for cid, png in r.images:
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>")
    # the parts are encoded by now (base64 in 76-character lines); what is left to write are
    # headers, and a subject that fits on a line of its own is folded by the standard library
    # right after "Subject:", which readers then show with a leading space
    msg.policy = _HEADERS_UNFOLDED
    return msg


def _file_stem(code: str) -> str:
    """A file name for a clinician code; odd codes get a stable hash instead of their text."""
    if _SAFE_NAME.fullmatch(code):
        return code
    return "clinician-" + hashlib.sha256(code.encode()).hexdigest()[:12]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_outbox(
    folder: Path,
    stem: str,
    rendered: Rendered,
    sender: str,
    recipient: str | None,
    message_id: str | None = None,
) -> EmailMessage:
    """The digest's three outbox files (HTML, text, the email as sent), each replaced whole."""
    folder.mkdir(parents=True, exist_ok=True)
    msg = build_message(rendered, sender, recipient)
    if message_id:
        msg.replace_header("Message-ID", message_id)
    _write_atomically(folder / f"{stem}.html", rendered.html_file.encode("utf-8"))
    _write_atomically(folder / f"{stem}.txt", rendered.text.encode("utf-8"))
    _write_atomically(folder / f"{stem}.eml", bytes(msg))
    return msg


def _deliver(
    journal: Journal,
    ledger: dict[tuple[str, str, dt.date, str], Entry],
    key: tuple[str, str, dt.date, str],
    rendered: Rendered,
    recipient: str | None,
    folder: Path,
    stem: str,
    smtp: SmtpSettings | None,
    n_clients: int,
) -> Delivery:
    clinic_id, clinician_id, week_start, kind = key
    previous = merge(ledger.get(key), journal.get(key))
    if previous is not None and previous.status == "sent":
        return Delivery(
            clinic_id, clinician_id, kind, "already_sent", previous.attempts, None, n_clients
        )
    sender = smtp.sender if smtp else DEFAULT_SENDER
    msg = _write_outbox(folder, stem, rendered, sender, recipient)
    entry = Entry(
        *key,
        status="written",
        attempts=previous.attempts if previous else 0,
        message_id=str(msg["Message-ID"]),
        outbox_path=str(folder / f"{stem}.eml"),
        n_clients=n_clients,
    )
    if smtp is not None and recipient:
        # journaled before sending: a crash between the send and the journal write leaves a
        # 'failed: interrupted' entry that the next run retries (at least once), never no trace
        journal.append(
            dc_replace(entry, status="failed", attempts=entry.attempts + 1, error="interrupted")
        )
        result = send(smtp, msg, [recipient])
        entry = dc_replace(
            entry,
            status="sent" if result.ok else "failed",
            attempts=entry.attempts + result.attempts,
            error=result.error,
            sent_at=dt.datetime.now(dt.UTC) if result.ok else None,
        )
    journal.append(entry)
    return Delivery(
        clinic_id,
        clinician_id,
        kind,
        entry.status,
        entry.attempts,
        folder / f"{stem}.html",
        n_clients,
        entry.error,
    )


def deliver_clinic(
    source: Path, cfg: ClinicConfig, week: Week, out_dir: Path, smtp: SmtpSettings | None
) -> list[Delivery]:
    """Every digest of one clinic's week: selected from `source` (read-only: the analyst
    snapshot, the warehouse, or the lake) with one query per relation for the whole clinic,
    then rendered, written, sent and journaled (`pipelines.deliver.deliveries`) with the source closed.
    The week's journal is locked meanwhile, so a second run of the same week waits and then
    finds every digest this one sent."""
    from pipelines import warehouse as wh

    folder = out_dir / cfg.clinic_id / week.start.isoformat()
    with Journal(folder) as journal:
        conn = wh.connect(source, read_only=True)
        try:
            ledger = ledger_state(conn, cfg.clinic_id, week.start)
            # a rerun draws nothing for the digests already sent (the charts are the cost)
            sent = {
                key: state
                for key in {*ledger, *journal.entries}
                if key[3] == "clinician"
                and (state := merge(ledger.get(key), journal.get(key))) is not None
                and state.status == "sent"
            }
            digests = select_clinician_digests(
                conn, cfg, week, skip=frozenset(key[1] for key in sent)
            )
            team = build_data_team_summary(conn, cfg, week)
        finally:
            conn.close()
        out = [
            Delivery(cfg.clinic_id, k[1], k[3], "already_sent", e.attempts, None, e.n_clients)
            for k, e in sorted(sent.items())
        ]
        out += [
            _deliver(
                journal,
                ledger,
                (cfg.clinic_id, digest.clinician_id, week.start, "clinician"),
                render_clinician_digest(digest),
                cfg.clinicians.get(digest.clinician_id),
                folder,
                _file_stem(digest.clinician_id),
                smtp,
                len(digest.flagged) + len(digest.repaired),
            )
            for digest in digests
        ]
        out.append(
            _deliver(
                journal,
                ledger,
                (cfg.clinic_id, DATA_TEAM, week.start, "data_team"),
                render_data_team_summary(team),
                cfg.notifications.data_team_email,
                folder,
                "_data_team",
                smtp,
                0,
            )
        )
    return out


def digest_workers(n_clinics: int) -> int:
    """Processes rendering clinics at once: env ALLIANCE_WATCH_DIGEST_WORKERS, else one per
    core; never more than there are clinics."""
    wanted = settings.workers_wanted("DIGEST_WORKERS") or os.cpu_count() or 1
    return max(1, min(wanted, n_clinics))


def record_deliveries(
    warehouse: Path,
    out_dir: Path,
    week_start: dt.date,
    clinic_ids: Sequence[str] | None = None,
) -> int:
    """Mirror the week's delivery journals into the warehouse ledger `digest_deliveries` (one
    short writer transaction); returns the number of digests recorded."""
    from pipelines import warehouse as wh

    entries = read_journals(out_dir, week_start, clinic_ids)
    if not entries:
        return 0
    with wh.open_warehouse(warehouse) as conn:
        return record(conn, entries)


def run_weekly_digest(
    warehouse: Path,
    config_dir: Path,
    as_of: dt.date,
    out_dir: Path,
    smtp: SmtpSettings | None = None,
    clinic_ids: Sequence[str] | None = None,
    source: Path | None = None,
) -> DigestRunSummary:
    """Render, write and (where `smtp` is given and an address is known) send every digest due
    on `as_of` for sessions dated in the seven days before it, clinics in parallel
    (`digest_workers`), reading `source` (default: `warehouse` itself) read-only; journal each
    delivery, then record them all in the warehouse ledger in one short write.

    Safe to re-run: a digest recorded as sent is skipped, failed ones are tried again. One
    clinic's invalid config is reported in the summary and does not stop the others."""
    from pipelines import warehouse as wh

    week = Week.before(as_of)
    configs, errors = load_clinic_configs(config_dir)
    summary = DigestRunSummary(as_of=as_of, week_start=week.start)
    summary.config_errors = [str(e) for e in errors]
    if source is None:
        source = warehouse
        with wh.open_warehouse(warehouse):
            pass  # the schema (and the ledger table) brought up to date before reading
    conn = wh.connect(source, read_only=True)
    try:
        flagged_clinics = conn.execute(
            "select distinct clinic_id from flags where session_date >= ? and session_date < ?",
            [week.start, week.end],
        ).fetchall()
    finally:
        conn.close()
    summary.unconfigured_clinics = sorted({c for (c,) in flagged_clinics} - set(configs))
    chosen = [
        cfg
        for clinic_id, cfg in sorted(configs.items())
        if clinic_ids is None or clinic_id in clinic_ids
    ]
    workers = digest_workers(len(chosen))
    if workers <= 1:
        for cfg in chosen:
            summary.deliveries.extend(deliver_clinic(source, cfg, week, out_dir, smtp))
    else:
        # processes, not threads: rendering is CPU-bound Python (matplotlib, Jinja2); spawned,
        # so no DuckDB or SMTP state of this process is copied into them
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(deliver_clinic, source, cfg, week, out_dir, smtp) for cfg in chosen
            ]
            for future in futures:
                summary.deliveries.extend(future.result())
    record_deliveries(warehouse, out_dir, week.start, [cfg.clinic_id for cfg in chosen])
    return summary


OUTBOX_SUFFIXES = (".html", ".txt", ".eml")


@dataclass
class OutboxErasure:
    """Outbox files of digests that named an erased client (paths; no client code)."""

    rendered_again: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def _client_patterns(client_id: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """How a digest names a client (`templates/clinician.*.j2`): in the text version a line
    that starts `Client <code> - ` (flagged) or `  * Client <code>: ` (repaired), in the HTML
    `Client <code></strong>`. Matching only these, not any occurrence of the code, keeps a
    short code such as `12` from matching a session number, a score or an image's bytes."""
    code = re.escape(client_id)
    html_code = re.escape(escape_html(client_id))
    # an answer given since the last digest (`answers_digest.followup_text`): a line `  > ...`
    # that names the client as "with <code> on" or "marked <code>'s"
    return (
        re.compile(
            rf"^(?:  \* )?Client {code}(?: - |: )|^  > .*?(?:with|marked) {code}(?: on|'s)",
            re.MULTILINE,
        ),
        re.compile(rf"Client {html_code}</strong>|(?:with|marked) <strong>{html_code}</strong>"),
    )


def _names_client(folder: Path, stem: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    """Whether the digest `stem` in the outbox names the client: by its text version (the .txt
    file, else the email's text part), else by its HTML."""
    in_text, in_html = patterns
    txt, eml, page = (folder / f"{stem}{s}" for s in (".txt", ".eml", ".html"))
    if txt.is_file():
        return bool(in_text.search(txt.read_text(encoding="utf-8", errors="replace")))
    if eml.is_file():
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        if isinstance(part, EmailMessage):
            return bool(in_text.search(str(part.get_content())))
    if page.is_file():
        return bool(in_html.search(page.read_text(encoding="utf-8", errors="replace")))
    return False


def erase_from_outbox(
    conn: duckdb.DuckDBPyConnection,
    outbox: Path,
    configs: dict[str, ClinicConfig],
    clinic_id: str,
    client_id: str,
) -> OutboxErasure:
    """After a client's rows have left the warehouse: every digest of the clinic in `outbox`
    whose files name the client is rendered again from the warehouse for the same week and
    recipient, so it holds everyone else as before and keeps the Message-ID the ledger
    records; a digest no longer due (nobody left to report, no all-clear wanted), or one that
    cannot be rendered because the clinic has no valid config, is removed. Emails already
    sent are out of reach; this is the copy the pipeline keeps and clinics may collect."""
    done = OutboxErasure()
    clinic_dir = outbox / clinic_id
    if not clinic_dir.is_dir():
        return done
    patterns = _client_patterns(client_id)
    cfg = configs.get(clinic_id)
    for folder in sorted(p for p in clinic_dir.iterdir() if p.is_dir()):
        for tmp in folder.glob(".*.tmp"):  # an interrupted write's leftover, never delivered
            tmp.unlink(missing_ok=True)
        stems = sorted({p.stem for p in folder.iterdir() if p.suffix in OUTBOX_SUFFIXES})
        hits = [s for s in stems if _names_client(folder, s, patterns)]
        if not hits:
            continue
        try:
            start = dt.date.fromisoformat(folder.name)
        except ValueError:
            start = None
        due: dict[str, tuple[Rendered, str | None]] = {}
        team: Rendered | None = None
        if cfg is not None and start is not None:
            week = Week(start=start, end=start + dt.timedelta(days=7))
            for d in select_clinician_digests(conn, cfg, week):
                due[_file_stem(d.clinician_id)] = (
                    render_clinician_digest(d),
                    cfg.clinicians.get(d.clinician_id),
                )
            team = render_data_team_summary(build_data_team_summary(conn, cfg, week))
        for stem in hits:
            rendered = team if stem == "_data_team" else due.get(stem, (None, None))[0]
            clean = rendered is not None and not (
                patterns[0].search(rendered.text) or patterns[1].search(rendered.html_file)
            )
            if rendered is None or not clean:
                for suffix in OUTBOX_SUFFIXES:
                    (folder / f"{stem}{suffix}").unlink(missing_ok=True)
                done.removed.append(folder / stem)
                continue
            eml = folder / f"{stem}.eml"
            old = email.message_from_bytes(eml.read_bytes()) if eml.is_file() else None
            _write_outbox(
                folder,
                stem,
                rendered,
                str(old["From"]) if old and old["From"] else DEFAULT_SENDER,
                str(old["To"]) if old and old["To"] else None,
                str(old["Message-ID"]) if old and old["Message-ID"] else None,
            )
            done.rendered_again.append(folder / stem)
    return done
