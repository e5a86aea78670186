"""Fingerprint detect()'s output on small, varied worlds, to check that a change to the
detection's SQL or settings leaves every digit of its results as they were.

Builds one in-memory warehouse from several grid worlds (pipelines/detect/grid.py: SRS and
WAI-SR, long courses with many misses, a small clinic, a high prevalence that makes the alert
ceiling bind, clients with a second treatment episode) and one small bench-shaped warehouse
(benchmarks/bench_detect.py), runs detect() with the default parameters and with
`alert_budget=0.05`, then an incremental run over some clients, and prints a hash of every
column of `flags`, `alert_episodes` and `detect_calibration` after each. Run it against two
checkouts and compare the output:

    .venv/bin/python benchmarks/detect_identity.py --repo /work/main > /tmp/main.json
    .venv/bin/python benchmarks/detect_identity.py --repo . > /tmp/branch.json
    cmp /tmp/main.json /tmp/branch.json

One thread, so that a fingerprint cannot depend on how DuckDB schedules its work. (Its windowed
float aggregates over frames longer than 16 rows combine partial sums by the row's position in
the window's partition, not in one fixed order: see docs/detection.md, Performance.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

TABLES = ("flags", "alert_episodes", "detect_calibration")
CELLS = (
    "central",
    "wai_central",
    "course_long",
    "clinic_small",
    "noise_mixed",
    "prevalence_high",
    "repair_fast",
)


def fingerprint(conn: Any) -> dict[str, Any]:
    """Row count and a hash of each column (and of whole rows) of every output table."""
    out: dict[str, Any] = {}
    for table in TABLES:
        cols = [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns "
                "where table_name = ? order by ordinal_position",
                [table],
            ).fetchall()
            if r[0] != "detected_at"
        ]
        # doubles as text: the shortest repr that round-trips, so any changed bit shows
        exprs = [f"sum(hash({c}::varchar))::hugeint::varchar" for c in cols]
        row = f"sum(hash({', '.join(c + '::varchar' for c in cols)}))::hugeint::varchar"
        values = conn.execute(f"select count(*), {row}, {', '.join(exprs)} from {table}").fetchone()  # noqa: S608
        out[table] = {
            "rows": values[0],
            "row_hash": values[1],
            **dict(zip(cols, values[2:], strict=True)),
        }
    return out


def grid_warehouse() -> Any:
    from dataclasses import replace

    import pandas as pd

    from pipelines.detect.grid import grid_cells, insert_canonical
    from pipelines.detect.worlds import simulate_world
    from pipelines.warehouse import engine, migrate

    cells = {w.name: w for w in grid_cells()}
    cohorts = [
        simulate_world(
            replace(cells[name], n_clients=min(cells[name].n_clients, 60)), seed, f"w_{name}_{seed}"
        )
        for name in CELLS
        for seed in (201, 202)
    ]
    conn = engine(threads=1)
    migrate(conn)
    insert_canonical(
        conn,
        pd.concat([c.measures for c in cohorts], ignore_index=True),
        pd.concat([c.appointments for c in cohorts], ignore_index=True),
    )
    # a second treatment episode for some clients: their later sessions are another series
    conn.execute(
        "update measurements set episode_id = 'e2' "
        "where hash(client_id) % 7 = 0 and session_number > 6"
    )
    conn.execute("update measurements set episode_id = 'e1' where hash(client_id) % 11 = 0")
    return conn


def bench_warehouse() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_detect import generate  # type: ignore[import-not-found]

    from pipelines.warehouse import engine, migrate

    conn = engine(threads=1)
    migrate(conn)
    generate(conn, 120_000)
    return conn


def run(conn: Any) -> dict[str, Any]:
    from pipelines.detect.ruptures import DetectParams, detect

    out: dict[str, Any] = {}
    detect(conn)
    out["default"] = fingerprint(conn)
    detect(conn, params=DetectParams(alert_budget=0.05))
    out["budget_0.05"] = fingerprint(conn)
    # back to the defaults, then an incremental run over every 5th client of the clinic with
    # the longest series (an incremental run reads only the clinics in scope): nothing may move
    detect(conn)
    pairs = conn.execute(
        "select distinct clinic_id, client_id from measurements "
        "where hash(client_id) % 5 = 0 and clinic_id = (select clinic_id from measurements "
        "group by clinic_id order by max(session_number) desc, clinic_id limit 1) order by all"
    ).fetchall()
    detect(conn, clients=[(str(a), str(b)) for a, b in pairs])
    out["incremental_equals_full"] = fingerprint(conn) == out["default"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", type=Path, required=True, help="the checkout whose code runs")
    args = ap.parse_args()
    repo = args.repo.resolve()
    os.environ["ALLIANCE_WATCH_SQL_DIR"] = str(repo / "sql")
    sys.path.insert(0, str(repo))
    import pipelines

    assert Path(pipelines.__file__).resolve().is_relative_to(repo), pipelines.__file__
    result = {"grid": run(grid_warehouse()), "bench": run(bench_warehouse())}
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
