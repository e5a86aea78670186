"""What clinicians' answers say about the alerts: the analyst report's section (answer rate,
clinician-confirmed precision with its 95% Wilson interval, recovery after a repair
conversation versus without), the answer rate in the data-team summary, and
`alliance-watch calibrate --clinic C`, which suggests an `alert_budget` from the clinic's
answers and changes nothing.

Everything reads the views `alert_outcomes` and `alert_answer_rates` (sql/views/).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import duckdb
import jinja2

from pipelines.deliver.answer_links import has_relation
from pipelines.errors import AllianceWatchError

MIN_ANSWERS = 10  # small cells: fewer answers than this give no rate (report and view agree)


TARGET_PRECISION = 0.5  # a flag should be right at least as often as it is wrong


BUDGET_FLOOR, BUDGET_CEILING = 0.01, 0.10  # DOMAIN: alert burden about 10 % at most


Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (n > 0)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _has_answers(conn: duckdb.DuckDBPyConnection) -> bool:
    return has_relation(conn, "alert_answer_rates")


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params or [])
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


_SECTION = jinja2.Environment(autoescape=True).from_string(
    """<h2>Clinicians' answers to the alerts</h2>
<p class="note">Each alert in a digest carries three one-click answers ("A rupture: we talked
about it", "A rupture: not talked about yet", "Not a rupture"); the last answer counts.
Clinician-confirmed precision is the two "a rupture" answers over all answers, with a 95%
Wilson interval; recovery is the alliance back at the client's own baseline within two
sessions of the alert. A rate is shown from {{ min }} answers (or alerts) up.</p>
<table><tr><th>clinic</th><th>alerts</th><th>answered</th><th>answer rate</th>
<th>confirmed precision (95% CI)</th><th>recovered after a conversation</th>
<th>recovered without one</th></tr>
{% for r in rows %}<tr><td>{{ r.clinic_id }}</td><td>{{ small(r.n_alerts) }}</td>
<td>{{ small(r.n_answered) }}</td>
<td>{{ pct(r.answer_rate) if r.answer_rate is not none and not r.rate_withheld else "&ndash;"|safe }}</td>
<td>{{ ("%.2f (%.2f to %.2f)"|format(r.confirmed_precision, r.precision_low, r.precision_high)) if r.confirmed_precision is not none else "suppressed (n < %d)"|format(min) }}</td>
<td>{{ pct(r.recovered_after_talk) if r.recovered_after_talk is not none else "suppressed (n < %d)"|format(min) }}</td>
<td>{{ pct(r.recovered_without_talk) if r.recovered_without_talk is not none else "suppressed (n < %d)"|format(min) }}</td></tr>
{% else %}<tr><td colspan="7">no alerts yet</td></tr>{% endfor %}</table>
"""
)


def report_section(conn: duckdb.DuckDBPyConnection, small: Any) -> str:
    """The report's HTML section, per clinic; `small` is the report's small-count formatter."""
    if not _has_answers(conn):
        return ""
    rows = _rows(conn, "select * from alert_answer_rates where grain = 'clinic' order by 2")
    for r in rows:
        # the answer rate beside an exact alert count would give a count shown as <10 away
        r["rate_withheld"] = 0 < int(r["n_answered"]) < MIN_ANSWERS
    return _SECTION.render(
        rows=rows, small=small, min=MIN_ANSWERS, pct=lambda x: f"{100 * float(x):.0f}%"
    )


def answer_rate_text(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, start: dt.date, end: dt.date
) -> str | None:
    """ "Clinicians answered N of M alerts opened from start to end (R%)", counts suppressed
    below 5 as the summary does elsewhere; None before any alert of that window."""
    from pipelines.deliver.cells import SMALL_CELL, suppress

    if not _has_answers(conn):
        return None
    n_alerts, n_answered = conn.execute(
        """
        select count(*), count(*) filter (where is_answered)
        from alert_outcomes
        where clinic_id = ? and opened_date >= ? and opened_date < ?
        """,
        [clinic_id, start, end],
    ).fetchall()[0]
    if not n_alerts:
        return None
    text = (
        f"Clinicians answered {suppress(int(n_answered))} of {suppress(int(n_alerts))} alerts "
        f"opened {start.isoformat()} to {(end - dt.timedelta(days=1)).isoformat()}"
    )
    if n_answered >= SMALL_CELL and n_alerts >= SMALL_CELL:
        text += f" ({100 * n_answered / n_alerts:.0f}%)"
    return text


@dataclass(frozen=True)
class Calibration:
    clinic_id: str
    n_alerts: int
    n_answers: int
    n_rupture: int
    current_budget: float | None  # the clinic's configured alert_budget
    flagged_share: float | None  # share of the clinic's alliance sessions flagged now
    suggested_budget: float | None  # None: too few answers to suggest anything

    @property
    def precision(self) -> float | None:
        return self.n_rupture / self.n_answers if self.n_answers else None

    def lines(self) -> list[str]:
        out = [
            f"clinic {self.clinic_id}: {self.n_answers} answers on {self.n_alerts} alerts "
            f"(the last answer of each alert counts)"
        ]
        base = (
            f"alert_budget {self.current_budget:g} (configured)"
            if self.current_budget is not None
            else (
                f"no alert_budget configured; {100 * self.flagged_share:.1f}% of alliance "
                "sessions flagged now"
                if self.flagged_share is not None
                else "no alert_budget configured"
            )
        )
        out.append(f"now: {base}")
        if self.precision is not None and self.n_answers >= MIN_ANSWERS:
            lo, hi = wilson(self.n_rupture, self.n_answers)
            out.append(
                f"clinician-confirmed precision {self.precision:.2f} "
                f"(95% CI {lo:.2f} to {hi:.2f}, {self.n_rupture} of {self.n_answers} answers "
                "say a rupture)"
            )
        if self.suggested_budget is None:
            out.append(
                f"suggestion: none yet: it rests on {self.n_answers} answers, and needs at least "
                f"{MIN_ANSWERS}"
            )
        else:
            out.append(
                f"suggested alert_budget: {self.suggested_budget:.3f} "
                f"(rests on {self.n_answers} answers)"
            )
        out.append(
            "nothing was changed: to apply a suggestion, set thresholds.alert_budget in the "
            f"clinic's config (config/clinics/{self.clinic_id}.yaml)"
        )
        return out


def suggest_budget(base: float, n_rupture: int, n_answers: int) -> float:
    """The budget the answers argue for, from `base` (the configured budget, else the share
    flagged now): unchanged while the precision's 95% interval holds TARGET_PRECISION (the
    answers do not tell it apart from the target); else scaled by precision / target, so more
    alerts where most are confirmed and fewer where most are not, within 1-10 % of sessions."""
    lo, hi = wilson(n_rupture, n_answers)
    if lo <= TARGET_PRECISION <= hi:
        return base
    scaled = base * (n_rupture / n_answers) / TARGET_PRECISION
    return min(BUDGET_CEILING, max(BUDGET_FLOOR, scaled))


def calibrate(
    conn: duckdb.DuckDBPyConnection, clinic_id: str, current_budget: float | None
) -> Calibration:
    if not _has_answers(conn):
        raise AllianceWatchError(
            "the warehouse has no answers relations yet (open it once with a writer to migrate)"
        )
    n_alerts, n_answers, n_rupture = conn.execute(
        """
        select count(*), count(*) filter (where is_answered),
               count(*) filter (where is_rupture_confirmed)
        from alert_outcomes where clinic_id = ?
        """,
        [clinic_id],
    ).fetchall()[0]
    if (
        not n_alerts
        and not conn.execute(
            "select count(*) from measurements where clinic_id = ?", [clinic_id]
        ).fetchall()[0][0]
    ):
        raise AllianceWatchError(f"--clinic {clinic_id}: no such clinic in the warehouse")
    share = conn.execute(
        """
        with alliance as (
            select m.clinic_id, m.client_id, m.episode_id, m.instrument, m.session_number
            from measurements as m
            inner join instruments as i on m.instrument = i.instrument
            where i.construct = 'alliance' and m.clinic_id = ?
        )
        select (select count(*) from flags as f
                inner join instruments as i on f.instrument = i.instrument
                where f.clinic_id = ? and i.construct = 'alliance')
               / nullif(count(*), 0)
        from alliance
        """,
        [clinic_id, clinic_id],
    ).fetchall()[0][0]
    base = current_budget if current_budget is not None else share
    suggested = (
        suggest_budget(float(base), int(n_rupture), int(n_answers))
        if base and n_answers >= MIN_ANSWERS
        else None
    )
    return Calibration(
        clinic_id,
        int(n_alerts),
        int(n_answers),
        int(n_rupture),
        current_budget,
        None if share is None else float(share),
        suggested,
    )
