"""`alliance-watch report --warehouse FILE --out report.html`: one self-contained HTML page for
analysts (charts embedded as base64 PNG, no external resources), read from the warehouse or a
snapshot opened read-only.

Charts: the alliance around ruptures (mean per session relative to the episode's opening, as a
share of each instrument's scale), flag rates per clinic, and alliance versus outcome per clinic
with the published r ~ .28 (Flückiger et al. 2018) drawn for reference. Small cells follow the
`alliance_outcome` view (r withheld below 10 clients).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.deliver.outcomes import report_section
from pipelines.warehouse import connect

PUBLISHED_R = 0.28


AROUND_RUPTURES_SQL = """
with around as (
    select
        t.instrument,
        t.clinic_id,
        t.client_id,
        t.session_number - e.opened_session as session_offset,
        (t.total - i.total_min) / (i.total_max - i.total_min) as share_of_scale
    from rupture_episodes as e
    inner join client_trajectories as t
        on t.clinic_id = e.clinic_id
        and t.client_id = e.client_id
        and t.instrument = e.instrument
    inner join instruments as i on t.instrument = i.instrument
    where t.session_number between e.opened_session - 4 and e.opened_session + 4
)

select
    instrument,
    session_offset,
    avg(share_of_scale) as mean_share,
    count(distinct (clinic_id, client_id)) as n
from around
group by instrument, session_offset
-- MIN_CELL clients (not ruptures: one client may have several): small cells are suppressed
-- (DOMAIN: outputs that leave the warehouse)
having count(distinct (clinic_id, client_id)) >= 10
order by instrument, session_offset
"""


FLAG_RATES_SQL = """
with sessions as (
    select clinic_id, count(*) as alliance_sessions
    from client_trajectories
    where construct = 'alliance'
    group by clinic_id
),

flagged as (
    select clinic_id, count(*) as flags, count(*) filter (where is_new) as new_episodes
    from flags
    group by clinic_id
)

select s.clinic_id, s.alliance_sessions, coalesce(f.flags, 0) as flags,
       coalesce(f.new_episodes, 0) as episodes,
       100.0 * coalesce(f.flags, 0) / s.alliance_sessions as flags_per_100
from sessions as s
left join flagged as f on s.clinic_id = f.clinic_id
order by s.clinic_id
"""


@dataclass
class Chart:
    title: str
    alt: str
    png_base64: str


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = conn.execute(sql)
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def around_ruptures_chart(rows: list[dict[str, Any]]) -> Chart:
    fig = Figure(figsize=(7, 3.6), dpi=100)
    ax = fig.add_subplot()
    for instrument in sorted({r["instrument"] for r in rows}):
        pts = [
            (r["session_offset"], 100 * r["mean_share"])
            for r in rows
            if r["instrument"] == instrument
        ]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=instrument)
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("sessions from the rupture's first flag")
    ax.set_ylabel("mean alliance, % of scale")
    if rows:
        ax.legend(frameon=False)
    else:
        ax.text(
            0.5,
            0.5,
            "no session offset with 10 or more clients yet (smaller cells are suppressed)",
            ha="center",
            transform=ax.transAxes,
        )
    fig.tight_layout()
    return Chart(
        "Alliance around ruptures",
        "Mean alliance score per session before and after each rupture's first flag",
        _png(fig),
    )


def flag_rates_chart(rows: list[dict[str, Any]]) -> Chart:
    """A bar per clinic; a clinic with 1-9 flags gets no bar (its rate and its exact session
    count would give the count away), only a "<10 flags" mark."""
    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.add_subplot()
    names = [r["clinic_id"] for r in rows]
    heights = [0.0 if r["rate_withheld"] else r["flags_per_100"] for r in rows]
    ax.bar(names, heights, color="#4c72b0")
    for i, r in enumerate(rows):
        if r["rate_withheld"]:
            ax.text(i, 0, "<10 flags", ha="center", va="bottom", fontsize=8, color="#555")
    ax.set_ylabel("flags per 100 alliance sessions")
    fig.tight_layout()
    return Chart("Flag rates per clinic", "Bar chart of flags per 100 alliance sessions", _png(fig))


def alliance_outcome_chart(rows: list[dict[str, Any]]) -> Chart:
    fig = Figure(figsize=(7, 3.6), dpi=100)
    ax = fig.add_subplot()
    shown = [r for r in rows if r["r"] is not None]
    labels = [
        f"{r['clinic_id']}\n{r['alliance_instrument']}/{r['outcome_instrument']}" for r in shown
    ]
    xs = list(range(len(shown)))
    if shown:
        ax.errorbar(
            xs,
            [r["r"] for r in shown],
            yerr=[
                [r["r"] - r["r_low"] for r in shown],
                [r["r_high"] - r["r"] for r in shown],
            ],
            fmt="o",
            capsize=4,
        )
        ax.set_xticks(xs, labels, fontsize=7)
    else:
        ax.text(0.5, 0.5, "too few clients for any clinic", ha="center", transform=ax.transAxes)
    ax.axhline(PUBLISHED_R, color="#c44e52", linestyle="--", label=f"published r = {PUBLISHED_R}")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("r (95% CI)")
    ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return Chart(
        "Early alliance and outcome",
        "Correlation of early alliance with symptom improvement per clinic, with 95% intervals",
        _png(fig),
    )


TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alliance Watch report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:.9em}
</style></head><body>
<h1>Alliance Watch report</h1>
<p class="note">Generated {{ generated }} from {{ source }}.
{{ totals.clinics }} clinics, {{ totals.clients }} clients, {{ totals.measures }} measures,
{% if totals.flags_withheld %}flagged sessions per clinic below (the total would give a
small clinic's count away){% else %}{{ totals.flags }} flagged sessions{% endif %}.
In the tables below, counts from 1 to 9 are shown as &lt;10, and a figure from which one
could be worked out is withheld (&ndash;).</p>
{% for c in charts %}
<section><h2>{{ c.title }}</h2>
<img alt="{{ c.alt }}" src="data:image/png;base64,{{ c.png_base64 }}"></section>
{% if c.title == "Flag rates per clinic" %}
<table><tr><th>clinic</th><th>alliance sessions</th><th>flags</th><th>episodes</th>
<th>per 100</th></tr>
{% for r in flag_rates %}<tr><td>{{ r.clinic_id }}</td><td>{{ small(r.alliance_sessions) }}</td>
<td>{{ small(r.flags) }}</td><td>{{ "&ndash;"|safe if r.episodes_withheld else small(r.episodes) }}</td>
<td>{{ "&ndash;"|safe if r.rate_withheld else "%.1f"|format(r.flags_per_100) }}</td></tr>
{% endfor %}</table>
{% endif %}
{% if c.title == "Early alliance and outcome" %}
<table><tr><th>clinic</th><th>alliance</th><th>outcome</th><th>n</th><th>r</th><th>95% CI</th></tr>
{% for r in outcome %}<tr><td>{{ r.clinic_id }}</td><td>{{ r.alliance_instrument }}</td>
<td>{{ r.outcome_instrument }}</td><td>{{ small(r.n) }}</td>
<td>{{ "%.2f"|format(r.r) if r.r is not none else ("suppressed (n < 10)" if r.suppressed else "undefined (no variance)") }}</td>
<td>{{ ("%.2f to %.2f"|format(r.r_low, r.r_high)) if r.r is not none else "" }}</td></tr>
{% endfor %}</table>
<p class="note">Reference: across 295 studies the alliance-outcome correlation is about
r = .28 (Flückiger, Del Re, Wampold &amp; Horvath, 2018, Psychotherapy 55(4), 316-340).</p>
{% endif %}
{% endfor %}
<h2>Rupture outcomes</h2>
<table><tr><th>clinic</th><th>repaired</th><th>ongoing</th><th>ended in dropout</th></tr>
{% for r in episodes %}<tr><td>{{ r.clinic_id }}</td><td>{{ small(r.repaired) }}</td>
<td>{{ small(r.ongoing) }}</td><td>{{ small(r.ended_in_dropout) }}</td></tr>{% endfor %}</table>
{{ answers_section|safe }}
</body></html>
"""
)


def render_report(warehouse: Path) -> str:
    """The report's HTML, computed from `warehouse` (opened read-only)."""
    conn = connect(warehouse, read_only=True)
    try:
        around = _rows(conn, AROUND_RUPTURES_SQL)
        rates = _rows(conn, FLAG_RATES_SQL)
        outcome = _rows(
            conn, "select * from alliance_outcome order by clinic_id, alliance_instrument, 3"
        )
        episodes = _rows(
            conn,
            """
            select clinic_id,
                   count(*) filter (where outcome = 'repaired') as repaired,
                   count(*) filter (where outcome = 'ongoing') as ongoing,
                   count(*) filter (where outcome = 'ended_in_dropout') as ended_in_dropout
            from rupture_episodes group by clinic_id order by clinic_id
            """,
        )
        (totals,) = _rows(
            conn,
            """
            select count(distinct clinic_id) as clinics,
                   count(distinct (clinic_id, client_id)) as clients, count(*) as measures,
                   (select count(*) from flags) as flags
            from measurements
            """,
        )
        answers_section = report_section(conn, suppress_small)
    finally:
        conn.close()
    withhold_complements(rates, episodes, totals)
    charts = [
        around_ruptures_chart(around),
        flag_rates_chart(rates),
        alliance_outcome_chart(outcome),
    ]
    return TEMPLATE.render(
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=warehouse.name,
        totals=totals,
        charts=charts,
        flag_rates=rates,
        outcome=outcome,
        episodes=episodes,
        small=suppress_small,
        answers_section=answers_section,
    )


MIN_CELL = 10


def suppress_small(n: int | None) -> str:
    """A count fit to leave the warehouse: 1-9 shown as "<10" (DOMAIN: small cells suppressed)."""
    if n is None:
        return ""
    return "<10" if 0 < int(n) < MIN_CELL else str(int(n))


def withhold_complements(
    rates: list[dict[str, Any]], episodes: list[dict[str, Any]], totals: dict[str, Any]
) -> None:
    """Secondary suppression: a count shown as "<10" must not be recoverable from the figures
    beside it. A clinic's flag rate goes with its exact session count (so it is withheld when
    its flags are 1-9); its episode total goes with its outcome counts (withheld when one of
    them is 1-9); the flags over all clinics go with each clinic's count (withheld when any
    clinic's is 1-9)."""
    small_outcome = {
        e["clinic_id"]
        for e in episodes
        if any(0 < int(e[k]) < MIN_CELL for k in ("repaired", "ongoing", "ended_in_dropout"))
    }
    for r in rates:
        r["rate_withheld"] = 0 < int(r["flags"]) < MIN_CELL
        r["episodes_withheld"] = r["clinic_id"] in small_outcome
    totals["flags_withheld"] = any(r["rate_withheld"] for r in rates)


def write_report(warehouse: Path, out: Path) -> Path:
    """Render the report and write it to `out` (folders created)."""
    html = render_report(warehouse)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
