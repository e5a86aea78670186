"""Rupture detection: (re)compute `flags` and `alert_episodes` from the warehouse, in DuckDB SQL.

The SQL lives in ``sql/detect/`` (one relation per file, each a chain of named CTEs); this module
only fills the parameter tables from the instrument registry and clinic configs, scopes the input
to the clients asked for, runs the relations in order and replaces those clients' rows. Every
feature is a window ending at the current session, so a flag at a session uses only data dated up
to that session; recomputing some clients gives exactly the rows a full recompute gives them.
See docs/detection.md for the signals, their evidence and the evaluation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import duckdb
import pandas as pd

from pipelines import settings
from pipelines.config import ClinicConfig, Thresholds
from pipelines.detect import session_order
from pipelines.errors import AllianceWatchError
from pipelines.registry import ALLIANCE_INSTRUMENTS, INSTRUMENTS, MAX_ITEMS, SYMPTOM_INSTRUMENTS
from pipelines.warehouse import sql_text, table_columns, transaction

# Relations in dependency order; each file `<name>.sql` becomes the temp relation `detect_<name>`.
RELATIONS: tuple[str, ...] = (
    "alliance_series",
    "alliance_features",
    "clinic_calibration",
    "symptom_context",
    "rupture_scores",
    "decline_cusum",
    "alert_thresholds",
    "rupture_signals",
    "episode_sessions",
    "flags",
    "alert_episodes",
)


# Relations read more than once (or small and read by several) are materialized; the rest stay
# views DuckDB can fuse. rupture_signals stays a view: it is arithmetic on alliance_features, and
# materializing its ~60 columns for every session cost more than computing them twice.
MATERIALIZED: frozenset[str] = frozenset(
    {
        "alliance_features",
        "clinic_calibration",
        "symptom_context",
        "decline_cusum",
        "alert_thresholds",
        "episode_sessions",
        "flags",
        # small (one row per episode), read by the write and by the summary
        "alert_episodes",
    }
)


# Which registry subscales make up the two parts of the alliance a repair conversation addresses:
# the bond (relational repair) and agreement on goals and tasks (renegotiation).
PART_SUBSCALES: dict[str, tuple[str, ...]] = {
    "bond": ("relationship", "bond"),
    "goal_task": ("goals", "approach", "goal", "task"),
}


# The columns detection writes into `flags`: the table's own (sql/schema/), but the time the
# warehouse stamps on a new flag.
FLAG_COLUMNS: tuple[str, ...] = tuple(c for c in table_columns("flags") if c != "detected_at")


FLAG_KEY: tuple[str, ...] = (
    "clinic_id",
    "client_id",
    "episode_id",
    "session_number",
    "instrument",
)


EPISODE_COLUMNS: tuple[str, ...] = (
    "alert_episode_id",
    "clinic_id",
    "client_id",
    "episode_id",
    "clinician_id",
    "instrument",
    "opened_session",
    "opened_date",
    "last_flag_session",
    "max_severity",
    "status",
    "closed_session",
    "closed_date",
)


class DetectError(AllianceWatchError):
    """Detection cannot run as asked (bad parameters, missing warehouse relations)."""


@dataclass(frozen=True)
class DetectParams:
    """Detection thresholds. Defaults come from the literature (docs/detection.md).

    Reliable change is never a parameter here: it is the registry's value for the instrument
    (Jacobson & Truax 1991, from the instrument's SD and reliability).
    """

    # instrument code -> concern cutoff on the total scale; missing = the registry's cutoff
    cutoffs: dict[str, float] = field(default_factory=dict)
    # deflection reason: a drop below the running baseline of this many of the client's own
    # (shrunk) SDs (Stiles et al. 2004: 2; Strauss et al. 2006: 1)
    deflection_sd: float = 2.0
    # flag when the strongest direction of the drop (the whole, or the whole with the part that
    # fell against the rest, on the client's shrunk scale, as normal deviates) reaches this;
    # 2.25 since the total's scale is widened by the clinic's skew (2.35 before: the same grid
    # recall and precision on the tuning seeds)
    flag_evidence: float = 2.25
    # ... and the drop from the baseline is at least this many of the clinic's pooled
    # within-client SDs (so a client with a very flat history is not flagged for a dip the
    # clinic's measurement noise makes)
    min_drop_sd: float = 0.5
    # a part has fallen (bond_drop / goal_task_drop, fallen_part) at this many of its own SDs
    part_z: float = 2.0
    # one-sided CUSUM of the standardized drops: reference value k and decision interval h
    # (DOMAIN.md: k = 0.5, h = 2.5 gives ~69 rupture-free sessions per false alarm)
    cusum_k: float = 0.5
    cusum_h: float = 4.0
    # share of alliance sessions the clinic wants flagged; None: the flag_evidence threshold
    alert_budget: float | None = None
    # with no alert_budget: the share of alliance sessions a clinic's flags may reach before its
    # threshold rises above flag_evidence (the budget's controller, binding only upward and only
    # once the clinic's flags overran the ceiling by more than chance); None: no ceiling. 0.085
    # keeps every grid cell's burden under 10 % (docs/detection.md, "Alert ceiling")
    alert_ceiling: float | None = 0.085
    # earlier alliance sessions a clinic needs before its budget quantile replaces flag_evidence
    budget_min_sessions: int = 80
    # the alert budget's controller (sql/detect/alert_thresholds.sql): the share of the running
    # balance (flags owed or overspent) a week carries into the next, and how strongly the
    # balance steers the share asked of the next week's quantile (x balance / sessions of the
    # last 6 weeks). Chosen on the grid's tuning seeds (docs/detection.md, "Alert budget").
    budget_forget: float = 0.95
    budget_gain: float = 2.0
    # weight of the registry's prior within-client SD, in sessions, against the clinic's own
    prior_sessions: int = 20
    # prior weight d0 of the clinic's pooled variance against a client's own (Smyth 2004),
    # before the clinic's own spread of client variances replaces it
    prior_df: float = 4.0
    # sustained decline reason: fitted drop over this many sessions (3-5) of at least
    # decline_min_drop x reliable change
    decline_sessions: int = 4
    decline_min_drop: float = 1.0
    # earlier sessions needed before any flag (the baseline is their mean)
    min_history: int = 2
    # an open episode is "ended" after this many days without an attended session before the
    # clinic's latest data date
    ended_after_days: int = 42

    def __post_init__(self) -> None:
        if self.decline_sessions not in (3, 4, 5):
            raise DetectError("decline_sessions must be 3, 4 or 5")
        if self.deflection_sd <= 0 or self.part_z <= 0 or self.flag_evidence <= 0:
            raise DetectError("deflection_sd, part_z and flag_evidence must be > 0")
        if self.min_drop_sd < 0 or self.cusum_k < 0 or self.cusum_h <= 0:
            raise DetectError("min_drop_sd and cusum_k must be >= 0, cusum_h > 0")
        if self.alert_budget is not None and not 0 < self.alert_budget < 0.5:
            raise DetectError("alert_budget must be a share between 0 and 0.5, e.g. 0.05")
        if self.alert_ceiling is not None and not 0 < self.alert_ceiling < 0.5:
            raise DetectError("alert_ceiling must be a share between 0 and 0.5, e.g. 0.085")
        if not 0 < self.budget_forget <= 1 or self.budget_gain < 0:
            raise DetectError("budget_forget must be in (0, 1] and budget_gain >= 0")
        if self.budget_min_sessions < 1 or self.prior_sessions < 1 or self.prior_df <= 0:
            raise DetectError("budget_min_sessions, prior_sessions >= 1 and prior_df > 0")
        if self.min_history < 1:
            raise DetectError("min_history must be at least 1")
        if self.decline_min_drop <= 0 or self.ended_after_days < 1:
            raise DetectError("decline_min_drop must be > 0 and ended_after_days >= 1")
        for code in self.cutoffs:
            if code not in ALLIANCE_INSTRUMENTS:
                raise DetectError(
                    f"cutoff override for {code!r}: use one of {', '.join(ALLIANCE_INSTRUMENTS)}"
                )

    def with_thresholds(self, thresholds: Thresholds) -> DetectParams:
        """These parameters with a clinic's config overrides applied (None keeps the value)."""
        cutoffs = dict(self.cutoffs)
        if thresholds.srs_cutoff is not None:
            cutoffs["SRS"] = thresholds.srs_cutoff
        if thresholds.wai_cutoff is not None:
            cutoffs["WAI-SR"] = thresholds.wai_cutoff
        changes: dict[str, object] = {"cutoffs": cutoffs}
        for name, value in thresholds.model_dump(exclude={"srs_cutoff", "wai_cutoff"}).items():
            if value is not None:
                # alert_ceiling: false switches the ceiling off
                changes[name] = None if value is False else value
        return replace(self, **changes)  # type: ignore[arg-type]


def params_from_configs(
    configs: dict[str, ClinicConfig], base: DetectParams | None = None
) -> dict[str, DetectParams]:
    """Per-clinic parameters: `base` (or the defaults) with each config's `thresholds` applied."""
    base = base or DetectParams()
    return {cid: base.with_thresholds(cfg.thresholds) for cid, cfg in configs.items()}


@dataclass(frozen=True)
class DetectSummary:
    clients: int  # clients (re)computed
    sessions: int  # alliance sessions scored
    flags: int
    new_flags: int  # episodes opened (flags with is_new)
    escalations: int  # flags that raised an open episode's severity
    episodes: dict[str, int]  # status -> count, for the clients (re)computed
    seconds: float
    # alliance sessions left out, dated after a higher-numbered session of their series
    # (pipelines/detect/session_order.py), in the clinics computed
    excluded_sessions: int = 0


def _part_weights(code: str, part: str) -> list[float]:
    """Per-item weights that make a part score the mean of the part's items (0 elsewhere)."""
    ins = INSTRUMENTS[code]
    items = sorted(
        {i for name, idx in ins.subscales.items() if name in PART_SUBSCALES[part] for i in idx}
    )
    weights = [0.0] * MAX_ITEMS
    for i in items:
        weights[i - 1] = 1.0 / len(items)
    return weights


def _params_frame(
    clinic_ids: list[str], params: DetectParams, clinic_params: dict[str, DetectParams]
) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    # No clinic in scope (an empty warehouse, or a load that touched no client): one row for
    # no clinic keeps the frame's columns, and the SQL then finds nothing to do.
    for clinic_id in clinic_ids or [""]:
        p = clinic_params.get(clinic_id, params)
        for code in ALLIANCE_INSTRUMENTS:
            ins = INSTRUMENTS[code]
            rc = ins.reliable_change
            # items per total point: a sum spreads a total drop over its items, a mean does not
            items_per_total = ins.n_items if ins.scoring == "sum" else 1
            bond_w = _part_weights(code, "bond")
            goal_task_w = _part_weights(code, "goal_task")
            rows.append(
                {
                    # a small integer key: the series rows carry it instead of two strings
                    "param_key": len(rows),
                    "clinic_id": clinic_id,
                    "instrument": code,
                    "cutoff": p.cutoffs.get(code, ins.cutoff),
                    "reliable_change": rc,
                    # a part has fallen when its per-item mean dropped by as much as a reliable
                    # total drop spread evenly over the items
                    "part_drop": rc / items_per_total,
                    # one scalar per item: a list lookup per row costs more at scale
                    **{f"bond_w{i + 1}": w for i, w in enumerate(bond_w)},
                    **{f"goal_task_w{i + 1}": w for i, w in enumerate(goal_task_w)},
                    "deflection_sd": p.deflection_sd,
                    "flag_evidence": p.flag_evidence,
                    "min_drop_sd": p.min_drop_sd,
                    "part_z": p.part_z,
                    "cusum_k": p.cusum_k,
                    "cusum_h": p.cusum_h,
                    "alert_budget": p.alert_budget,
                    "alert_ceiling": p.alert_ceiling,
                    "budget_min_sessions": p.budget_min_sessions,
                    "budget_forget": p.budget_forget,
                    "budget_gain": p.budget_gain,
                    # the registry's priors, as variances, and their weight in sessions
                    "prior_var_total": (ins.within_sd or ins.standard_error) ** 2,
                    # a part's deviation from the whole (the contrast) carries only the item
                    # noise, not the session's shared swing: about half a part's variance
                    "prior_var_contrast": 0.5 * (ins.within_part_sd or ins.standard_error) ** 2,
                    # the total as a per-item mean, the scale of the part scores
                    "per_item_scale": 1.0 / ins.n_items if ins.scoring == "sum" else 1.0,
                    "prior_sessions": p.prior_sessions,
                    "prior_df": p.prior_df,
                    # the smallest variance a running variance is read as: a client whose
                    # every score was equal has a variance below the scale's resolution
                    "variance_floor": (
                        ins.item_step if ins.scoring == "sum" else ins.item_step / ins.n_items
                    )
                    ** 2
                    / 12,
                    "decline_sessions": p.decline_sessions,
                    "decline_min_drop": p.decline_min_drop * rc,
                    "min_history": p.min_history,
                    "ended_after_days": p.ended_after_days,
                    # the deployed rules' "1 point": one point of the summed scale
                    "one_point": 1.0 if ins.scoring == "sum" else 1.0 / ins.n_items,
                }
            )
    return pd.DataFrame(rows)


def _symptom_params_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "instrument": code,
                "reliable_change": INSTRUMENTS[code].reliable_change,
                # +1: a higher score is worse; -1: a lower score is worse
                "worse_sign": 1.0 if INSTRUMENTS[code].direction == "higher_worse" else -1.0,
            }
            for code in SYMPTOM_INSTRUMENTS
        ]
    )


def _relation_sql(name: str) -> str:
    return sql_text(f"detect/{name}.sql")


# trigamma(x) for x >= 0.5: six steps of the recurrence trigamma(x) = trigamma(x + 1) + 1 / x^2,
# then the asymptotic series (error < 1e-9); the calibration needs it for the sampling variance
# of a log variance (Smyth 2004). DuckDB has no polygamma function.
TRIGAMMA_MACRO = """
create or replace temp macro aw_trigamma(x) as
    1 / x ^ 2 + 1 / (x + 1) ^ 2 + 1 / (x + 2) ^ 2 + 1 / (x + 3) ^ 2 + 1 / (x + 4) ^ 2
    + 1 / (x + 5) ^ 2
    + 1 / (x + 6) + 1 / (2 * (x + 6) ^ 2) + 1 / (6 * (x + 6) ^ 3) - 1 / (30 * (x + 6) ^ 5)
    + 1 / (42 * (x + 6) ^ 7)
"""

# one clinic, client or episode id as it stands in an alert episode id (pipelines/detect/ids.py
# writes the same rule for Python)
ID_PART_MACRO = """
create or replace temp macro aw_id_part(x) as replace(replace(x, '%', '%25'), ':', '%3A')
"""


# Relations computed for every client of the clinics in scope: the clinic's calibration and
# budget threshold rest on all its sessions. The rest are computed for the clients in scope.
CLINIC_WIDE: tuple[str, ...] = RELATIONS[: RELATIONS.index("rupture_signals") + 1]


CALIBRATION_COLUMNS: tuple[str, ...] = (
    "clinic_id",
    "instrument",
    "week_start",
    "n_calibration_sessions",
    "pooled_var_total",
    "pooled_var_bond",
    "pooled_var_goal_task",
    "prior_df_total",
    "prior_df_bond",
    "prior_df_goal_task",
    "budget_threshold",
    "pooled_var_total_down",
)


def _drop_any(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    for kind in ("table", "view"):
        # it may exist as the other kind, which the other iteration drops
        with contextlib.suppress(duckdb.CatalogException):
            conn.execute(f"drop {kind} if exists {name}")


def _scope(conn: duckdb.DuckDBPyConnection, clients: list[tuple[str, str]] | None) -> None:
    """`detect_scope_measurements` / `_appointments`: the rows of every client of the clinics
    in scope (views over the whole tables for a full recompute, temp tables for an incremental
    one): a clinic's calibration rests on all its sessions. `detect_scope` lists the clients
    whose flags are recomputed (incremental only)."""
    for name in ("measurements", "appointments"):
        _drop_any(conn, f"detect_scope_{name}")
    if clients is None:
        conn.execute(
            "create or replace temp view detect_scope_measurements as select * from measurements"
        )
        conn.execute(
            "create or replace temp view detect_scope_appointments as select * from appointments"
        )
        return
    _set_scope_clients(conn, clients)
    # materialized once: every relation that reads the scope then reads only these clinics'
    # rows instead of probing the whole table again
    for name in ("measurements", "appointments"):
        conn.execute(
            f"create or replace temp table detect_scope_{name} as "  # noqa: S608
            f"select t.* from {name} as t "
            "where t.clinic_id in (select distinct clinic_id from detect_scope)"
        )


def _set_scope_clients(conn: duckdb.DuckDBPyConnection, clients: list[tuple[str, str]]) -> None:
    scope = pd.DataFrame(clients, columns=["clinic_id", "client_id"]).drop_duplicates()
    conn.register("detect_scope_frame", scope)
    conn.execute(
        "create or replace temp table detect_scope as "
        "select clinic_id::varchar as clinic_id, client_id::varchar as client_id, "
        "hash(clinic_id::varchar, client_id::varchar) as client_key "
        "from detect_scope_frame"
    )
    conn.unregister("detect_scope_frame")


# rupture_signals' flag decision, from what decline_cusum and alert_thresholds already hold: a
# candidate whose alert score reaches the clinic's threshold of the week (its budget's, else
# flag_evidence). It only chooses the series the episode passes read; _check_flag_decisions
# refuses to go on if it ever disagrees with rupture_signals.sql's own is_flag on them.
FLAG_DECISION_SQL = """
    select c.series_key, c.session_number
    from detect_decline_cusum as c
    inner join detect_params as p
        on c.param_key = p.param_key
    left join detect_alert_thresholds as t
        on c.param_key = t.param_key
        and c.week_start = t.week_start
    where c.is_candidate and c.alert_score >= coalesce(t.budget_threshold, p.flag_evidence)
"""


def _scope_signals(conn: duckdb.DuckDBPyConnection, scoped: bool) -> None:
    """`detect_scoped_signals`: the sessions whose flags and episodes are (re)computed, and
    `detect_scoped_flag_decisions`: those of them that are flags."""
    conn.execute(
        "create or replace temp view detect_scoped_signals as select s.* "
        "from detect_rupture_signals as s"
        + (" semi join detect_scope as k on s.client_key = k.client_key" if scoped else "")
    )
    conn.execute(
        f"create or replace temp view detect_scoped_flag_decisions as {FLAG_DECISION_SQL}"  # noqa: S608
        + (
            " and c.series_key in (select f.series_key from detect_alliance_features as f "
            "semi join detect_scope as k on f.client_key = k.client_key)"
            if scoped
            else ""
        )
    )


def _flagged_signals(conn: duckdb.DuckDBPyConnection) -> None:
    """`detect_flagged_signals`: the signals of the flagged sessions only, for `flags`.

    rupture_scores and rupture_signals are per-session arithmetic (no window), so the same SQL
    over the features of the ~10 % of sessions that are flag rows gives the same values; reading
    the view over every session again cost `flags` more than all its own work."""
    conn.execute(
        "create or replace temp table detect_flagged_features as select f.* "
        "from detect_alliance_features as f semi join "
        "(select series_key, session_number from detect_episode_sessions where is_flagged) as e "
        "on f.series_key = e.series_key and f.session_number = e.session_number"
    )
    conn.execute(
        "create or replace temp view detect_flagged_cusum as select c.* "
        "from detect_decline_cusum as c semi join detect_flagged_features as f "
        "on c.series_key = f.series_key and c.session_number = f.session_number"
    )
    _signals_view(
        conn,
        ("detect_flagged_features", "detect_flagged_cusum"),
        ("detect_flagged_scores", "detect_flagged_signals"),
    )


def _prepare(
    conn: duckdb.DuckDBPyConnection,
    clients: list[tuple[str, str]] | None,
    params: DetectParams | None,
    clinic_params: dict[str, DetectParams] | None,
) -> None:
    params = params or DetectParams()
    clinic_params = clinic_params or {}
    _scope(conn, clients)
    clinic_ids = [
        r[0]
        for r in conn.execute("select distinct clinic_id from detect_scope_measurements").fetchall()
    ]
    conn.register("detect_params_frame", _params_frame(clinic_ids, params, clinic_params))
    conn.execute("create or replace temp table detect_params as select * from detect_params_frame")
    conn.unregister("detect_params_frame")
    conn.register("detect_symptom_params_frame", _symptom_params_frame())
    conn.execute(
        "create or replace temp table detect_symptom_params as "
        "select * from detect_symptom_params_frame"
    )
    conn.unregister("detect_symptom_params_frame")
    conn.execute(TRIGAMMA_MACRO)
    conn.execute(ID_PART_MACRO)
    # sessions dated out of session order, which alliance_series leaves out
    session_order.build(conn)


def _rewired(name: str, *replacements: tuple[str, str]) -> str:
    """`<name>.sql` reading each `target` where it reads `source` (which it must read exactly
    once): the same SQL over a subset of its input."""
    sql = _relation_sql(name)
    for source, target in replacements:
        if sql.count(source) != 1:
            raise DetectError(f"{name}.sql must read {source} exactly once")
        sql = sql.replace(source, target)
    return sql


def _signals_view(
    conn: duckdb.DuckDBPyConnection, sources: tuple[str, str], views: tuple[str, str]
) -> None:
    """The per-session SQL of rupture_scores and rupture_signals (no window) as views over a
    subset of the sessions: `sources` = (its features, its CUSUM rows), `views` = (the scores
    view, the signals view) to create."""
    features, cusum = sources
    scores_view, signals_view = views
    scores = _rewired("rupture_scores", ("detect_alliance_features", features))
    conn.execute(f"create or replace temp view {scores_view} as {scores}")
    signals = _rewired(
        "rupture_signals",
        ("detect_rupture_scores", scores_view),
        ("detect_decline_cusum", cusum),
    )
    conn.execute(f"create or replace temp view {signals_view} as {signals}")


def _episode_signals(conn: duckdb.DuckDBPyConnection) -> None:
    """`detect_episode_signals`: the scoped signals of the series with at least one flag, for
    `episode_sessions` (and their features, `detect_flag_series_features`, for `flags`).

    A series without a flag has no episode, so none of its sessions is kept; its sessions only
    made the episode window passes longer (two thirds of them on the benchmark). The flagged
    series are found from the flag decision alone; the same per-session SQL over their features
    (and CUSUM rows) then gives the same signals, as for `_flagged_signals`, so the arithmetic
    of the episode columns and the window passes run over those series only.

    The decision is read from decline_cusum and alert_thresholds (FLAG_DECISION_SQL): evaluating
    rupture_signals over every session for its is_flag cost ~3 CPU s at 10M rows, the join
    ~0.2 s."""
    conn.execute(
        "create or replace temp table detect_flag_decisions as "
        "select * from detect_scoped_flag_decisions"
    )
    conn.execute(
        "create or replace temp table detect_flag_series as "
        "select distinct series_key from detect_flag_decisions"
    )
    for view, source in (
        ("detect_flag_series_features", "detect_alliance_features"),
        ("detect_flag_series_cusum", "detect_decline_cusum"),
    ):
        conn.execute(
            f"create or replace temp view {view} as select r.* from {source} as r "  # noqa: S608
            "semi join detect_flag_series as k on r.series_key = k.series_key"
        )
    _signals_view(
        conn,
        ("detect_flag_series_features", "detect_flag_series_cusum"),
        ("detect_flag_series_scores", "detect_episode_signals"),
    )


def _create(conn: duckdb.DuckDBPyConnection, names: tuple[str, ...]) -> None:
    for name in names:
        kind = "table" if name in MATERIALIZED else "view"
        if name == "episode_sessions":
            _episode_signals(conn)
            sql = _rewired(name, ("detect_scoped_signals", "detect_episode_signals"))
        elif name == "flags":
            # the sustained-decline fit reads the features of the flagged series only
            sql = _rewired(name, ("detect_alliance_features", "detect_flag_series_features"))
        else:
            sql = _relation_sql(name)
        conn.execute(f"create or replace temp {kind} detect_{name} as {sql}")
        if name == "episode_sessions":
            _check_flag_decisions(conn)


def _check_flag_decisions(conn: duckdb.DuckDBPyConnection) -> None:
    """Refuse to go on if the flags rupture_signals.sql decides over the flagged series are not
    exactly the sessions FLAG_DECISION_SQL chose them by: the two copies of the decision have
    drifted apart (a change to one that the other must follow), and series with a flag could
    be missing from the episodes. Every flag of those series is in episode_sessions."""
    row = conn.execute(
        """
        with real as (
            select series_key, session_number from detect_episode_sessions where is_flag
        )
        select
            (select count(*) from (select * from real except select * from detect_flag_decisions))
            + (select count(*) from (select * from detect_flag_decisions except select * from real))
        """
    ).fetchone()
    if row is not None and row[0]:
        raise DetectError(
            "ruptures.FLAG_DECISION_SQL no longer decides the flags rupture_signals.sql does "
            f"({row[0]} sessions differ); make the two agree"
        )


def build_relations(
    conn: duckdb.DuckDBPyConnection,
    clients: list[tuple[str, str]] | None = None,
    params: DetectParams | None = None,
    clinic_params: dict[str, DetectParams] | None = None,
    relations: tuple[str, ...] = RELATIONS,
) -> None:
    """Create the temp relations `detect_<name>` of `sql/detect/` for the clients in scope.

    The evaluation uses this to run `baseline_rules` over the same features as the detector.
    """
    _prepare(conn, clients, params, clinic_params)
    for name in relations:
        if name == "flags":
            _flagged_signals(conn)
        _create(conn, (name,))
        if name == "rupture_signals":
            _scope_signals(conn, scoped=clients is not None)


def _calibration_frame_sql() -> str:
    """The calibration just computed, with names, in CALIBRATION_COLUMNS order."""
    return """
        select
            p.clinic_id,
            p.instrument,
            c.week_start,
            c.n_calibration_sessions,
            c.pooled_var_total,
            c.pooled_var_bond,
            c.pooled_var_goal_task,
            c.prior_df_total,
            c.prior_df_bond,
            c.prior_df_goal_task,
            t.budget_threshold,
            c.pooled_var_total_down
        from detect_clinic_calibration as c
        inner join detect_params as p
            on c.param_key = p.param_key
        left join detect_alert_thresholds as t
            on c.param_key = t.param_key
            and c.week_start = t.week_start
    """


def _calibration_moved(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Clients of the clinics in scope whose flags a changed calibration moves: those with an
    alliance session in or after the earliest week whose calibration differs from the one
    stored by the last detection (late or corrected data of an earlier week). In the usual
    weekly delivery no earlier week changes and this is empty."""
    cols = CALIBRATION_COLUMNS[3:]
    differs = " or ".join(f"n.{c} is distinct from o.{c}" for c in cols)
    rows = conn.execute(
        f"""
        with new as ({_calibration_frame_sql()}),
        old as (
            select * from detect_calibration
            where clinic_id in (select distinct clinic_id from detect_scope)
        ),
        changed as (
            select
                coalesce(n.clinic_id, o.clinic_id) as clinic_id,
                coalesce(n.instrument, o.instrument) as instrument,
                min(coalesce(n.week_start, o.week_start)) as first_week
            from new as n
            full outer join old as o
                on n.clinic_id = o.clinic_id
                and n.instrument = o.instrument
                and n.week_start = o.week_start
            where n.clinic_id is null or o.clinic_id is null or {differs}
            group by all
        )
        select distinct m.clinic_id, m.client_id
        from detect_scope_measurements as m
        inner join changed as c
            on m.clinic_id = c.clinic_id
            and m.instrument = c.instrument
            and m.session_date >= c.first_week
        """  # noqa: S608
    ).fetchall()
    return [(str(c), str(k)) for c, k in rows]


def drop_relations(conn: duckdb.DuckDBPyConnection) -> None:
    """Drop every temp relation build_relations() may have created."""
    conn.execute("drop view if exists detect_episode_signals")
    conn.execute("drop view if exists detect_flag_series_scores")
    conn.execute("drop view if exists detect_flag_series_features")
    conn.execute("drop view if exists detect_flag_series_cusum")
    conn.execute("drop view if exists detect_flagged_cusum")
    conn.execute("drop table if exists detect_flag_series")
    conn.execute("drop table if exists detect_flag_decisions")
    conn.execute("drop view if exists detect_scoped_flag_decisions")
    conn.execute("drop view if exists detect_scoped_signals")
    conn.execute("drop view if exists detect_flagged_signals")
    conn.execute("drop view if exists detect_flagged_scores")
    conn.execute("drop table if exists detect_flagged_features")
    for name in (*reversed(RELATIONS), "baseline_rules"):
        kind = "table" if name in MATERIALIZED else "view"
        conn.execute(f"drop {kind} if exists detect_{name}")
    session_order.drop(conn)


def _replace_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    scoped: bool,
) -> None:
    """Make `table`'s rows (of the clients in scope, or all) equal `detect_<table>`, deleting and
    inserting only the rows that differ.

    Deleting from a table with a primary-key index is slow in DuckDB 1.4 (~0.1 ms a row: 200k
    flags took 22 s), so rows that did not change are kept as they are (with their detected_at).
    """
    new_hash = f"hash({', '.join(f'n.{c}' for c in columns)})"
    old_hash = f"hash({', '.join(f't.{c}' for c in columns)})"
    same_key = " and ".join(f"n.{k} = t.{k}" for k in key)
    in_scope = (
        "semi join detect_scope as s on s.clinic_id = t.clinic_id and s.client_id = t.client_id"
        if scoped
        else ""
    )
    # straight from detect_<table> (materialized): a copy of every new row with its hash cost a
    # full extra write of the flags (their evidence is ~0.7 kB a row); and the rows of the
    # clients in scope first, so that only theirs are hashed (an incremental run hashed every
    # row of the table)
    conn.execute(
        f"delete from {table} where rowid in (select t.rowid from {table} as t {in_scope} "  # noqa: S608
        f"anti join detect_{table} as n on {same_key} and {new_hash} = {old_hash})"
    )
    cols = ", ".join(columns)
    conn.execute(
        f"insert into {table} ({cols}) select {cols} from detect_{table} as n "  # noqa: S608
        f"where not exists (select 1 from {table} as t where {same_key})"
    )


def _check_series_keys(conn: duckdb.DuckDBPyConnection) -> None:
    """Windows partition on 64-bit hashes of (clinic, client, instrument), and symptoms and misses
    join on a hash of (clinic, client); refuse to go on if two series or two clients ever share
    one (never silently merge them).

    Measurements are unique per (clinic, client, session, instrument), so two series sharing a key
    show up as one session number twice in a partition; the flags, which carry the names, must map
    each key to one series. Client keys are checked over the distinct clients in scope.
    """
    clash = conn.execute(
        """
        select
            (select count(*) from detect_alliance_features
             where session_number = previous_session_number)
            + (select count(*) from (select series_key from detect_flags group by series_key
               having count(distinct (clinic_id, client_id, episode_id, instrument)) > 1))
            + (select count(*) from (
                select client_key from (
                    select distinct clinic_id, client_id, hash(clinic_id, client_id) as client_key
                    from detect_scope_measurements
                )
                group by client_key having count(*) > 1
            ))
        """
    ).fetchone()
    if clash is not None and clash[0]:
        _check_duplicate_sessions(conn)
        raise DetectError("two alliance series share a hash key; report this as a bug")


def _check_duplicate_sessions(conn: duckdb.DuckDBPyConnection) -> None:
    """A session stored twice in one series (rows written around the loader, which keeps one
    row per key; or once with episode_id NULL and once with '', which name the same treatment
    episode) is a data problem, not a hash clash: say which sessions, so that whoever wrote
    them can keep one row of each. Only called once the cheap check found a clash."""
    rows = conn.execute(
        """
        select clinic_id, client_id, instrument, coalesce(episode_id, '') as episode,
            session_number, count(*) as n
        from detect_scope_measurements
        -- the alliance series the clash was found in
        where instrument in (select distinct instrument from detect_params)
        group by all
        having count(*) > 1
        order by all
        """
    ).fetchall()
    if not rows:
        return
    clinic, client, instrument, episode, session, n = rows[0]
    where = f"treatment episode '{episode}'" if episode else "no treatment episode"
    raise DetectError(
        f"measurements holds {len(rows)} alliance session(s) more than once in one series, "
        f"e.g. clinic {clinic}, client {client}, {instrument} session {session}, {where}, "
        f"{n} rows (episode_id NULL and '' are the same treatment episode); the loader keeps "
        "one row per session, so these rows were written around it: keep one row of each "
        "and run detection again"
    )


def detect(
    conn: duckdb.DuckDBPyConnection,
    clients: list[tuple[str, str]] | None = None,
    params: DetectParams | None = None,
    clinic_params: dict[str, DetectParams] | None = None,
) -> DetectSummary:
    """Recompute `flags` and `alert_episodes` for every client, or only the (clinic_id,
    client_id) pairs in `clients`, replacing exactly those clients' rows in one transaction.

    `params` applies to every clinic without an entry in `clinic_params`. The result for a client
    does not depend on which other clients are computed with it.
    """
    start = time.perf_counter()
    with _bulk_settings(conn):
        return _detect(conn, clients, params, clinic_params, start)


def with_open_episodes(
    conn: duckdb.DuckDBPyConnection,
    clients: list[tuple[str, str]],
    clinic_params: dict[str, DetectParams] | None = None,
    params: DetectParams | None = None,
) -> list[tuple[str, str]]:
    """`clients` and every client of their clinics whose open episode has ended by now.
    Whether an open episode ended (the client stopped attending, or left its treatment episode
    for a later one) is judged against the clinic's latest data date, which any load of the
    clinic moves on; a client who dropped out never appears in a load again, so their episode
    would stay `ongoing` under incremental detection alone. Only clients whose last attended
    date, or the last session of an open episode's treatment episode, lies `ended_after_days`
    or more before that date are added (at the boundary too, to be safe): for every other
    client nothing of theirs changed, so the run stays as small as the load."""
    clinics = sorted({clinic for clinic, _ in clients})
    if not clinics:
        return clients
    rows = conn.execute(
        """
        with open_episodes as (
            select distinct clinic_id, client_id, coalesce(episode_id, '') as episode_id
            from alert_episodes
            where status = 'ongoing' and list_contains($clinics, clinic_id)
        ),
        open_clients as (
            select distinct clinic_id, client_id from open_episodes
        ),
        clinic_latest as (
            select clinic_id, max(latest) as latest_date
            from (
                select clinic_id, max(session_date) as latest from measurements
                where list_contains($clinics, clinic_id) group by clinic_id
                union all
                select clinic_id, max(appointment_date) from appointments
                where list_contains($clinics, clinic_id) group by clinic_id
            )
            group by clinic_id
        ),
        last_seen as (
            -- one scan of the open clients' sessions and attended appointments: the last date
            -- per treatment episode ('' for appointments, which carry none)
            select o.clinic_id, o.client_id, seen.episode_id, max(seen.day) as last_date
            from open_clients as o
            inner join (
                select clinic_id, client_id, coalesce(episode_id, '') as episode_id,
                    session_date as day
                from measurements
                union all
                select clinic_id, client_id, '', appointment_date from appointments
                where status = 'attended'
            ) as seen
                on o.clinic_id = seen.clinic_id and o.client_id = seen.client_id
            group by all
        ),
        last_attended as (
            select clinic_id, client_id, max(last_date) as last_date
            from last_seen
            group by clinic_id, client_id
            union all
            -- the open episode's treatment episode (a superset of those the client left for a
            -- later one: the detection decides)
            select s.clinic_id, s.client_id, s.last_date
            from last_seen as s
            semi join open_episodes as o
                on s.clinic_id = o.clinic_id and s.client_id = o.client_id
                and s.episode_id = o.episode_id
            where s.episode_id <> ''
        )
        select a.clinic_id, a.client_id, date_diff('day', a.last_date, l.latest_date)
        from last_attended as a
        inner join clinic_latest as l on a.clinic_id = l.clinic_id
        """,
        {"clinics": clinics},
    ).fetchall()
    default = params or DetectParams()
    per_clinic = clinic_params or {}
    ended = {
        (str(c), str(k))
        for c, k, days in rows
        if days >= per_clinic.get(str(c), default).ended_after_days
    }
    return sorted(set(clients) | ended)


def detect_memory_limit() -> str:
    """DuckDB's memory cap while detect() runs: env ALLIANCE_WATCH_DETECT_MEMORY, else 4GB.

    The warehouse connection's cap (512MB, for ingest) would make the per-session features of a
    10M-row warehouse (~0.6 GB) spill to disk, which more than doubled a full recompute."""
    return settings.detect_memory()


@contextlib.contextmanager
def _bulk_settings(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run with settings for bulk work, restoring the caller's afterwards: no insertion order to
    keep (the relations are keyed, and order costs memory and time in every materialization) and
    room for the features in memory."""
    row = conn.execute(
        "select current_setting('preserve_insertion_order'), current_setting('memory_limit')"
    ).fetchone()
    assert row is not None
    order_before, memory_before = bool(row[0]), str(row[1])
    conn.execute("set preserve_insertion_order = false")
    conn.execute("set memory_limit = ?", [detect_memory_limit()])
    try:
        yield
    finally:
        conn.execute(f"set preserve_insertion_order = {str(order_before).lower()}")
        conn.execute("set memory_limit = ?", [memory_before])


def _detect(
    conn: duckdb.DuckDBPyConnection,
    clients: list[tuple[str, str]] | None,
    params: DetectParams | None,
    clinic_params: dict[str, DetectParams] | None,
    start: float,
) -> DetectSummary:
    _prepare(conn, clients, params, clinic_params)
    _create(conn, CLINIC_WIDE)
    if clients is not None:
        moved = _calibration_moved(conn)
        if moved:
            _set_scope_clients(conn, sorted(set(clients) | set(moved)))
    _scope_signals(conn, scoped=clients is not None)
    _create(conn, ("episode_sessions",))
    _flagged_signals(conn)
    _create(conn, ("flags", "alert_episodes"))
    _check_series_keys(conn)

    scoped = clients is not None
    with transaction(conn):
        _replace_rows(conn, "flags", FLAG_KEY, FLAG_COLUMNS, scoped=scoped)
        _replace_rows(conn, "alert_episodes", ("alert_episode_id",), EPISODE_COLUMNS, scoped=scoped)
        # a warehouse without non-literal defaults (a lake) leaves detected_at empty: new flags
        # get their time here, in the same transaction (a no-op where the default set it)
        conn.execute("update flags set detected_at = now() where detected_at is null")
        conn.execute(
            "delete from detect_calibration"  # noqa: S608
            + (
                " where clinic_id in (select distinct clinic_id from detect_scope_measurements)"
                if scoped
                else ""
            )
        )
        conn.execute(
            f"insert into detect_calibration ({', '.join(CALIBRATION_COLUMNS)}) "
            + _calibration_frame_sql()
        )
        # the sessions left out, with their reason, for the clinics' data teams
        excluded = session_order.record(conn, scoped=scoped)

    scoped_features = (
        "select f.client_key from detect_alliance_features as f "
        "semi join detect_scope as k on f.client_key = k.client_key"
        if scoped
        else "select client_key from detect_alliance_features"
    )
    stats = conn.execute(
        f"""
        with scoped_features as ({scoped_features})
        select
            (select count(distinct client_key) from scoped_features),
            (select count(*) from scoped_features),
            count(*),
            count(*) filter (where is_new),
            count(*) filter (where alert_kind = 'escalated')
        from detect_flags
        """  # noqa: S608
    ).fetchone()
    assert stats is not None
    episodes = dict(
        conn.execute(
            "select status, count(*) from detect_alert_episodes group by status"
        ).fetchall()
    )
    drop_relations(conn)
    return DetectSummary(
        clients=int(stats[0]),
        sessions=int(stats[1]),
        flags=int(stats[2]),
        new_flags=int(stats[3]),
        escalations=int(stats[4]),
        episodes={str(k): int(v) for k, v in episodes.items()},
        seconds=time.perf_counter() - start,
        excluded_sessions=excluded,
    )
