"""The robustness grid: detection scored over many worlds against the deployed rules.

Not a full cross of every dimension: a central cell, each dimension moved alone to both ends,
and the hard corners (docs/detection.md). Each cell is scored on several seeds; the parameters
were chosen on TUNING_SEEDS only and the report uses the others. Everything here reads only the
warehouse (an in-memory DuckDB per run) and the world's truth.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import duckdb
import pandas as pd

from pipelines.detect.evaluate import METHODS, Scores, alliance_sessions, flagged_sessions, score
from pipelines.detect.ruptures import DetectParams, detect
from pipelines.detect.worlds import World, simulate_world

TUNING_SEEDS: tuple[int, ...] = (101, 102)
REPORT_SEEDS: tuple[int, ...] = (201, 202, 203)

CENTRAL = World()


def grid_cells() -> list[World]:
    """The cells: central, each dimension at both ends, the hard corners."""
    c = CENTRAL
    # WAI-SR: a mean of 1-5; trend scaled as the within-client SD is (0.2 vs the SRS's 1.2)
    w = replace(
        c,
        instrument="WAI-SR",
        level_mean=3.9,
        level_sd=0.45,
        level_range=(2.2, 5.3),
        trend=(0.0, 0.015),
        sd_range=(0.1, 0.4),
    )
    cells = [
        c,
        replace(c, name="noise_stable", sd_median=0.5, sd_log_spread=0.35),
        replace(c, name="noise_noisy", sd_median=2.6, sd_log_spread=0.3),
        replace(c, name="noise_mixed", sd_median=1.0, sd_log_spread=1.0),
        replace(w, name="wai_central", sd_median=0.2, sd_log_spread=0.4),
        replace(w, name="wai_stable", sd_median=0.12, sd_log_spread=0.2),
        replace(w, name="wai_noisy", sd_median=0.35, sd_log_spread=0.2),
        replace(c, name="level_low", level_mean=32.5, level_sd=1.5),
        replace(c, name="level_ceiling", level_mean=40.0, level_sd=1.2),
        replace(c, name="trend_none", trend=(0.0, 0.0), autocorrelation=0.0),
        replace(c, name="trend_strong", trend=(0.1, 0.3), autocorrelation=0.5),
        replace(c, name="course_short", sessions=(4, 8)),
        replace(c, name="course_long", sessions=(15, 25), miss_rate=0.3),
        replace(c, name="misses_few", miss_rate=0.1),
        replace(c, name="clinic_small", n_clients=20),
        replace(c, name="clinic_large", n_clients=500),
        replace(c, name="prevalence_low", rupture_rate=0.2),
        replace(c, name="prevalence_high", rupture_rate=0.55),
        replace(c, name="size_small", size=(1.0, 2.0)),
        replace(c, name="size_large", size=(3.0, 4.0)),
        replace(c, name="shape_dip", shape_probs=(1.0, 0.0, 0.0)),
        replace(c, name="shape_decline", shape_probs=(0.0, 1.0, 0.0)),
        replace(c, name="shape_sustained", shape_probs=(0.0, 0.0, 1.0)),
        replace(c, name="part_one", part_probs=(0.5, 0.5, 0.0)),
        replace(c, name="part_all", part_probs=(0.0, 0.0, 1.0)),
        replace(c, name="onset_early", onset_max=3),
        replace(c, name="repair_fast", repair_rate=1.0, repair_lag=(1, 1)),
        replace(c, name="repair_never", repair_rate=0.0),
        replace(
            c,
            name="corner_stable_ceiling_small",
            sd_median=0.5,
            sd_log_spread=0.35,
            level_mean=40.0,
            level_sd=1.2,
            n_clients=20,
        ),
        replace(
            c,
            name="corner_noisy_gradual_early",
            sd_median=2.6,
            sd_log_spread=0.3,
            shape_probs=(0.0, 1.0, 0.0),
            onset_max=3,
        ),
    ]
    return cells


def has_target(world: World) -> bool:
    """Cells whose ruptures are all at least 2 within-client SDs carry the acceptance targets."""
    return world.size[0] >= 2.0


@dataclass(frozen=True)
class CellScores:
    cell: str
    method: str
    scores: Scores
    delay: float  # mean sessions from onset to the first flag, over ruptures flagged at all
    sessions_per_false_alert: float  # on rupture-free clients (not chronically low)
    recall_active: float  # ruptures flagged at any session while active
    seconds: float


def load_world(
    world: World, seeds: Iterable[int]
) -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame]:
    """An in-memory warehouse holding one clinic of `world` per seed (no ingest), and the
    truth. Each seed is its own clinic, so each is calibrated on its own data, and the scores
    pool the seeds' ruptures and flags (a small clinic's few ruptures make per-seed ratios
    jumpy)."""
    from pipelines.warehouse import engine, migrate

    cohorts = [simulate_world(world, seed, f"w_{world.name}_{seed}") for seed in seeds]
    conn = engine()
    migrate(conn)
    insert_canonical(
        conn,
        pd.concat([c.measures for c in cohorts], ignore_index=True),
        pd.concat([c.appointments for c in cohorts], ignore_index=True),
    )
    return conn, pd.concat([c.truth for c in cohorts], ignore_index=True)


def insert_canonical(
    conn: duckdb.DuckDBPyConnection, measures: object, appointments: object, source: str = "sim"
) -> None:
    """Simulated canonical rows (frames or Arrow tables) straight into the warehouse tables,
    as if loaded from one file `source` (no ingest: the evaluation scores detection alone)."""
    for table, rows in (("measurements", measures), ("appointments", appointments)):
        conn.register("sim_rows", rows)
        try:
            conn.execute(
                f"insert into {table} by name select *, ? as source_file, "  # noqa: S608
                "0 as source_line, ? as sha256, 0 as load_id from sim_rows",
                [source, source],
            )
        finally:
            conn.unregister("sim_rows")


def _delay_and_quiet(
    flags: pd.DataFrame, truth: pd.DataFrame, sessions: pd.DataFrame
) -> tuple[float, float, float]:
    """Mean detection delay (sessions), sessions per false alert on rupture-free clients, and
    recall at any time while the rupture is active (onset to repair or last session)."""
    keys = ["clinic_id", "client_id", "instrument"]
    ruptures = truth[truth["kind"] == "rupture"]
    hits = ruptures.merge(flags, on=keys)
    end = hits["repaired_session"].fillna(hits["last_session"])
    hits = hits[(hits["session_number"] >= hits["onset_session"]) & (hits["session_number"] <= end)]
    n_active = len(hits[keys].drop_duplicates())
    recall_active = n_active / len(ruptures) if len(ruptures) else math.nan
    first = hits.groupby(keys)["session_number"].min().reset_index()
    first = first.merge(ruptures[[*keys, "onset_session"]], on=keys)
    gaps = first["session_number"] - first["onset_session"]
    delay = float(gaps.mean()) if len(first) else math.nan
    other = truth.loc[truth["kind"].isin(["rupture", "chronic_low"]), keys].drop_duplicates()
    quiet = sessions.merge(other, on=keys, how="left", indicator=True)
    quiet = quiet[quiet["_merge"] == "left_only"]
    false = flags.merge(quiet[[*keys]].drop_duplicates(), on=keys)
    per = len(quiet) / len(false) if len(false) else math.inf
    return delay, float(per), float(recall_active)


def score_cell(
    world: World, seeds: Iterable[int], params: DetectParams | None = None
) -> list[CellScores]:
    """Detect on one world (a clinic per seed) and score the detector and every deployed rule."""
    conn, truth = load_world(world, seeds)
    try:
        t = time.perf_counter()
        detect(conn, params=params)
        took = time.perf_counter() - t
        sessions = alliance_sessions(conn)
        out = []
        for method, flags in flagged_sessions(conn, params).items():
            s = score(flags, truth, sessions)
            delay, quiet, active = _delay_and_quiet(flags, truth, sessions)
            out.append(CellScores(world.name, method, s, delay, quiet, active, took))
        return out
    finally:
        conn.close()


def run_grid(
    cells: Iterable[World] | None = None,
    seeds: Iterable[int] = REPORT_SEEDS,
    params: DetectParams | None = None,
) -> pd.DataFrame:
    """One row per (cell, method) with every metric, pooled over the seeds."""
    rows = []
    seeds = tuple(seeds)
    for world in cells if cells is not None else grid_cells():
        for r in score_cell(world, seeds, params):
            rows.append(
                {
                    "cell": r.cell,
                    "method": r.method,
                    "target": has_target(world),
                    "recall": r.scores.recall,
                    "precision": r.scores.precision,
                    "f1": r.scores.f1,
                    "burden": r.scores.burden,
                    "delay": r.delay,
                    "sessions_per_false_alert": r.sessions_per_false_alert,
                    "recall_active": r.recall_active,
                    "n_ruptures": r.scores.n_ruptures,
                    "seconds": r.seconds,
                }
            )
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell and method: the mean over seeds of each metric."""
    metrics = [
        "recall",
        "precision",
        "f1",
        "burden",
        "delay",
        "sessions_per_false_alert",
        "recall_active",
    ]
    return results.groupby(["cell", "method", "target"], sort=False)[metrics].mean().reset_index()


def format_grid(results: pd.DataFrame) -> str:
    """The detector per cell beside each deployed rule's F1, the worst cells and the means."""
    s = summarize(results)
    det = s[s["method"] == "detector"].set_index("cell")
    rules = [m for m in METHODS if m != "detector"]
    lines = [
        f"{'cell':<28} {'recall':>6} {'prec':>6} {'F1':>6} {'burden':>6} {'delay':>5} "
        f"{'quiet':>6} {'active':>6} | " + " ".join(f"{m[:14]:>14}" for m in rules)
    ]
    for cell, row in det.iterrows():
        rule_f1 = [float(s[(s["cell"] == cell) & (s["method"] == m)]["f1"].iloc[0]) for m in rules]
        mark = "" if row["target"] else " *"
        lines.append(
            f"{str(cell) + mark:<28} {row['recall']:>6.2f} {row['precision']:>6.2f} "
            f"{row['f1']:>6.2f} {row['burden']:>6.3f} {row['delay']:>5.2f} "
            f"{row['sessions_per_false_alert']:>6.0f} {row['recall_active']:>6.2f} | "
            + " ".join(f"{f:>14.2f}" for f in rule_f1)
        )
    t = det[det["target"]]
    if len(t):
        lines.append("")
        lines.append(
            f"cells with a target ({len(t)}): mean recall {t['recall'].mean():.3f}, "
            f"mean precision {t['precision'].mean():.3f}, mean F1 {t['f1'].mean():.3f}; "
            f"worst recall {t['recall'].min():.2f} ({t['recall'].idxmin()}), "
            f"worst precision {t['precision'].min():.2f} ({t['precision'].idxmin()}), "
            f"highest burden {t['burden'].max():.3f} ({t['burden'].idxmax()})"
        )
        behind = [
            str(cell)
            for cell in t.index
            if det.loc[cell, "f1"]
            <= s[(s["cell"] == cell) & (s["method"] != "detector")]["f1"].max()
        ]
        lines.append(
            f"detector F1 above every deployed rule in {len(t) - len(behind)} of {len(t)} cells"
            + (f" (not in: {', '.join(behind)})" if behind else "")
        )
    lines.append("(* no target: ruptures smaller than 2 within-client SDs)")
    return "\n".join(lines)
