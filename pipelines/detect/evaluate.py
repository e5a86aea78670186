"""Score alliance flags against the simulator's ground truth, side by side with the deployed rules.

Definitions (issue 6):
* recall: ruptures flagged at their onset session or the next one;
* precision: flagged sessions that fall while a rupture is active (from its onset until the
  session it is repaired, or, if never repaired, the client's last session; plus one session of
  grace), leaving out clients with chronically low alliance;
* burden: flagged sessions / sessions with an alliance score;
* pre-dropout: unrepaired ruptures ending in dropout that were flagged before the last attended
  session.
Deployed rules, computed on the same sessions without look-ahead (sql/detect/baseline_rules.sql):
cutoff only; cutoff or any 1-point drop (PCOMS/OpenFIT); 2-SD deflection (Stiles et al. 2004).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.canonical import TRUTH_COLUMNS
from pipelines.detect.ruptures import DetectParams, build_relations, drop_relations
from pipelines.errors import AllianceWatchError
from pipelines.registry import ALLIANCE_INSTRUMENTS

SESSION_KEY: list[str] = ["clinic_id", "client_id", "instrument", "session_number"]


# method name -> column of baseline_rules (None: the detector's own `flags`)
METHODS: dict[str, str | None] = {
    "detector": None,
    "cutoff_only": "is_rule_cutoff",
    "cutoff_or_1pt_drop": "is_rule_cutoff_or_drop",
    "deflection_2sd": "is_rule_deflection_2sd",
}


class TruthError(AllianceWatchError):
    """The truth file cannot be used (missing, or not in the simulator's truth format)."""


@dataclass(frozen=True)
class Scores:
    recall: float
    precision: float
    f1: float
    burden: float
    pre_dropout: float
    n_ruptures: int
    n_flagged_sessions: int
    n_alliance_sessions: int
    n_dropout_ruptures: int


def load_truth(path: Path) -> pd.DataFrame:
    """The simulator's truth.csv, typed; TruthError naming what is missing."""
    if not path.is_file():
        raise TruthError(f"{path}: truth file does not exist")
    truth = pd.read_csv(path, dtype={"clinic_id": str, "client_id": str, "instrument": str})
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise TruthError(f"{path}: missing columns {', '.join(missing)} (see docs/architecture.md)")
    for col in ("onset_session", "repaired_session", "dropout_session", "last_session"):
        truth[col] = pd.to_numeric(truth[col], errors="raise").astype("Int64")
    return truth


def alliance_sessions(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every session with an alliance score: the denominator of the burden."""
    codes = list(ALLIANCE_INSTRUMENTS)
    return conn.execute(
        "select clinic_id, client_id, instrument, session_number from measurements "
        "where list_contains(?, instrument)",
        [codes],
    ).df()


def flagged_sessions(
    conn: duckdb.DuckDBPyConnection,
    params: DetectParams | None = None,
    clinic_params: dict[str, DetectParams] | None = None,
) -> dict[str, pd.DataFrame]:
    """Flagged sessions per method: the detector's `flags` as stored, and each deployed rule."""
    out: dict[str, pd.DataFrame] = {
        "detector": conn.execute(
            "select clinic_id, client_id, instrument, session_number from flags"
        ).df()
    }
    build_relations(
        conn,
        params=params,
        clinic_params=clinic_params,
        relations=("alliance_series", "alliance_features", "baseline_rules"),
    )
    try:
        rules = conn.execute("select * from detect_baseline_rules").df()
    finally:
        drop_relations(conn)
    for method, column in METHODS.items():
        if column is not None:
            out[method] = rules.loc[rules[column], SESSION_KEY].reset_index(drop=True)
    return out


def score(flags: pd.DataFrame, truth: pd.DataFrame, sessions: pd.DataFrame) -> Scores:
    """The issue's metrics for one method's flagged sessions (columns SESSION_KEY)."""
    flags = flags[SESSION_KEY].drop_duplicates()
    ruptures = truth[truth["kind"] == "rupture"].reset_index(drop=True)
    ruptures["rupture_id"] = range(len(ruptures))
    chronic = truth.loc[
        truth["kind"] == "chronic_low", ["clinic_id", "client_id"]
    ].drop_duplicates()

    # recall: a flag at the onset session or the next one, same client and instrument
    hits = ruptures.merge(flags, on=["clinic_id", "client_id", "instrument"])
    on_time = hits[
        (hits["session_number"] >= hits["onset_session"])
        & (hits["session_number"] <= hits["onset_session"] + 1)
    ]
    recall = on_time["rupture_id"].nunique() / len(ruptures) if len(ruptures) else float("nan")

    # precision: flags of clients not chronically low, inside an active window plus one session
    judged = flags.merge(chronic, on=["clinic_id", "client_id"], how="left", indicator=True)
    judged = judged[judged["_merge"] == "left_only"].drop(columns="_merge")
    judged = judged.reset_index(drop=True)
    judged["flag_id"] = range(len(judged))
    window_end = ruptures["repaired_session"].fillna(ruptures["last_session"])
    windows = ruptures.assign(window_end=window_end + 1)
    inside = judged.merge(windows, on=["clinic_id", "client_id", "instrument"])
    inside = inside[
        (inside["session_number"] >= inside["onset_session"])
        & (inside["session_number"] <= inside["window_end"])
    ]
    n_true = inside["flag_id"].nunique()
    precision = n_true / len(judged) if len(judged) else float("nan")
    f1 = (
        2 * precision * recall / (precision + recall)
        if len(judged) and len(ruptures) and precision + recall > 0
        else 0.0
    )

    # pre-dropout: unrepaired ruptures ending in dropout, flagged before the last attended session
    dropouts = ruptures[ruptures["repaired_session"].isna() & ruptures["dropout_session"].notna()]
    early = dropouts.merge(flags, on=["clinic_id", "client_id", "instrument"])
    early = early[
        (early["session_number"] >= early["onset_session"])
        & (early["session_number"] < early["last_session"])
    ]
    pre_dropout = early["rupture_id"].nunique() / len(dropouts) if len(dropouts) else float("nan")

    n_sessions = len(sessions)
    return Scores(
        recall=float(recall),
        precision=float(precision),
        f1=float(f1),
        burden=len(flags) / n_sessions if n_sessions else float("nan"),
        pre_dropout=float(pre_dropout),
        n_ruptures=len(ruptures),
        n_flagged_sessions=len(flags),
        n_alliance_sessions=n_sessions,
        n_dropout_ruptures=len(dropouts),
    )


def evaluate(
    conn: duckdb.DuckDBPyConnection,
    truth: pd.DataFrame,
    params: DetectParams | None = None,
    clinic_params: dict[str, DetectParams] | None = None,
) -> dict[str, Scores]:
    """Scores of the stored flags and of each deployed rule against `truth`, by method name."""
    sessions = alliance_sessions(conn)
    return {
        method: score(flags, truth, sessions)
        for method, flags in flagged_sessions(conn, params, clinic_params).items()
    }


def format_table(results: dict[str, Scores]) -> str:
    """A fixed-width table, one row per method."""
    header = (
        f"{'method':<20} {'recall':>7} {'precision':>9} {'F1':>6} {'burden':>7} {'pre-dropout':>11}"
    )
    lines = [header, "-" * len(header)]
    for method, s in results.items():
        lines.append(
            f"{method:<20} {s.recall:>7.3f} {s.precision:>9.3f} {s.f1:>6.3f} "
            f"{s.burden:>7.3f} {s.pre_dropout:>11.3f}"
        )
    first = next(iter(results.values()), None)
    if first is not None:
        lines.append(
            f"({first.n_ruptures} ruptures, {first.n_dropout_ruptures} ending in dropout, "
            f"{first.n_alliance_sessions} alliance sessions)"
        )
    return "\n".join(lines)
