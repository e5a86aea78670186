"""Benchmark rupture detection: full recompute over ~10M measurement rows, then incremental
recompute of 1 % of the clients (as after a load that touched them).

Data is generated with vectorized numpy straight into a DuckDB file (SRS + ORS every session,
weekly appointments with some misses, a share of clients with a rupture), so the benchmark does not
depend on the simulator or the ingest path.

    .venv/bin/python benchmarks/bench_detect.py [--rows 10000000] [--db /tmp/bench_detect.duckdb]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# generating 10M rows in one statement needs more than the 512MB ingest-time default
os.environ.setdefault("ALLIANCE_WATCH_DUCKDB_MEMORY", "4GB")
from pipelines.detect.ruptures import detect  # noqa: E402
from pipelines.warehouse import connect, migrate  # noqa: E402

SESSIONS = 12  # per client; two measures (SRS, ORS) per session


def generate(conn: object, n_rows: int, seed: int = 7) -> tuple[int, int]:
    """Insert ~n_rows measurement rows and their appointments; return (clients, measure rows)."""
    rng = np.random.default_rng(seed)
    n_clients = n_rows // (2 * SESSIONS)
    clinic = rng.integers(0, 20, n_clients)
    ci = np.repeat(np.arange(n_clients), SESSIONS)
    si = np.tile(np.arange(1, SESSIONS + 1), n_clients)
    start = np.datetime64("2024-01-01") + rng.integers(0, 365, n_clients).astype("timedelta64[D]")
    date = start[ci] + ((si - 1) * 7).astype("timedelta64[D]")
    level = np.clip(rng.normal(9.2, 0.6, n_clients), 5, 10)[ci]
    rupture = (rng.random(n_clients) < 0.2)[ci] & (si >= rng.integers(3, SESSIONS, n_clients)[ci])
    items = (
        level[:, None] + rng.normal(0, 0.4, (len(ci), 4)) - rupture[:, None] * [2.5, 0.5, 0.5, 1]
    )
    items = np.round(np.clip(items, 0, 10), 1)
    ors = np.round(np.clip(rng.normal(6, 1.5, (len(ci), 4)), 0, 10), 1)
    # numeric columns only: DuckDB formats the ids, which is far faster than Python strings
    base = {
        "clinic_no": clinic[ci].astype(np.int32),
        "client_no": ci.astype(np.int64),
        "session_number": si.astype(np.int32),
        "session_date": date,
    }
    for code, it in (("SRS", items), ("ORS", ors)):
        df = pd.DataFrame(base)
        for j in range(4):
            df[f"item_{j + 1}"] = it[:, j]
        df["total"] = np.round(it.sum(axis=1), 1)
        conn.register("bench_in", df)  # type: ignore[attr-defined]
        conn.execute(  # type: ignore[attr-defined]
            "insert into measurements by name select "  # noqa: S608
            "'clinic_' || clinic_no as clinic_id, 'c' || client_no as client_id, "
            "'t1' as clinician_id, session_number, session_date, "
            f"'{code}' as instrument, '1.0' as instrument_version, "
            "item_1, item_2, item_3, item_4, total, 'bench' as source_file, "
            "session_number as source_line, 'bench' as sha256, 0 as load_id from bench_in"
        )
        conn.unregister("bench_in")  # type: ignore[attr-defined]
    # appointments: each session attended, plus a miss the day before ~15 % of sessions
    miss = rng.random(len(ci)) < 0.15
    appts = pd.DataFrame(
        {
            "clinic_no": np.concatenate([base["clinic_no"], base["clinic_no"][miss]]),
            "client_no": np.concatenate([base["client_no"], base["client_no"][miss]]),
            "appointment_date": np.concatenate([date, date[miss] - np.timedelta64(1, "D")]),
            "is_missed": np.concatenate([np.zeros(len(ci), bool), np.ones(int(miss.sum()), bool)]),
        }
    )
    conn.register("bench_appts", appts)  # type: ignore[attr-defined]
    conn.execute(  # type: ignore[attr-defined]
        "insert into appointments by name select "
        "'clinic_' || clinic_no as clinic_id, 'c' || client_no as client_id, "
        "'t1' as clinician_id, appointment_date, "
        "case when is_missed then 'no_show' else 'attended' end as status, "
        "'bench' as source_file, 0 as source_line, 'bench' as sha256, 0 as load_id from bench_appts"
    )
    conn.unregister("bench_appts")  # type: ignore[attr-defined]
    return n_clients, 2 * len(ci)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/bench_detect.duckdb"))
    ap.add_argument("--fraction", type=float, default=0.01, help="share of clients for incremental")
    ap.add_argument("--reuse", action="store_true", help="reuse the data already in --db")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "detect.json"
    )
    args = ap.parse_args()
    if not args.reuse:
        for p in (args.db, Path(f"{args.db}.wal")):
            p.unlink(missing_ok=True)
    conn = connect(args.db)
    conn.execute("set threads = 2")
    migrate(conn)
    if args.reuse:
        row = conn.execute(
            "select count(*), count(distinct (clinic_id, client_id)) from measurements"
        ).fetchone()
        assert row is not None
        n_rows, n_clients = int(row[0]), int(row[1])
    else:
        t = time.perf_counter()
        n_clients, n_rows = generate(conn, args.rows)
        conn.execute("checkpoint")
        took = time.perf_counter() - t
        print(f"generated {n_rows} measurement rows, {n_clients} clients in {took:.1f} s")

    # a full recompute from scratch: no earlier flags or episodes to compare against
    conn.execute("delete from flags")
    conn.execute("delete from alert_episodes")
    conn.execute("checkpoint")
    load_before = os.getloadavg()
    # CPU seconds of the process (DuckDB's threads included): on a shared machine the wall
    # time grows with the load, the CPU time much less
    cpu = time.process_time()
    full = detect(conn)
    full_cpu = time.process_time() - cpu
    print(
        f"full recompute: {full.seconds:.2f} s wall, {full_cpu:.1f} s CPU, "
        f"{n_rows / full.seconds:,.0f} measurement rows/s "
        f"({full.sessions} alliance sessions, {full.flags} flags, {full.new_flags} new; "
        f"load average {load_before[0]:.2f})"
    )
    before = conn.execute(
        "select count(*), sum(hash(clinic_id, client_id, session_number, severity, reasons, "
        "alert_episode_id, is_new)) from flags"
    ).fetchone()

    # a load is one clinic's delivery: `fraction` of all clients, drawn from one clinic (its
    # calibration is recomputed from all its sessions, the other clinics are not read)
    rng = np.random.default_rng(1)
    touched = conn.execute(
        "select distinct clinic_id, client_id from measurements where clinic_id = 'clinic_0'"
    ).df()
    want = min(len(touched), int(n_clients * args.fraction))
    touched = touched.iloc[rng.choice(len(touched), want, replace=False)]
    pairs = list(touched.itertuples(index=False, name=None))
    load_inc = os.getloadavg()
    cpu = time.process_time()
    inc = detect(conn, clients=pairs)
    inc_cpu = time.process_time() - cpu
    touched_rows = conn.execute(
        "select count(*) from measurements m semi join detect_scope s "
        "on m.clinic_id = s.clinic_id and m.client_id = s.client_id"
    ).fetchone()
    assert touched_rows is not None
    after = conn.execute(
        "select count(*), sum(hash(clinic_id, client_id, session_number, severity, reasons, "
        "alert_episode_id, is_new)) from flags"
    ).fetchone()
    print(
        f"incremental ({len(pairs)} clients, {touched_rows[0]} rows): {inc.seconds:.2f} s "
        f"wall, {inc_cpu:.1f} s CPU, "
        f"{touched_rows[0] / inc.seconds:,.0f} rows/s; flags identical to full: {before == after}"
    )
    conn.close()
    result = {
        "measurement_rows": n_rows,
        "clients": n_clients,
        "threads": 2,
        "full_seconds": round(full.seconds, 2),
        "full_cpu_seconds": round(full_cpu, 1),
        "full_rows_per_second": round(n_rows / full.seconds),
        "full_load_average_1_5_15": [round(x, 2) for x in load_before],
        "alliance_sessions": full.sessions,
        "flags": full.flags,
        "episodes_opened": full.new_flags,
        "escalations": full.escalations,
        "incremental_clients": len(pairs),
        "incremental_rows": int(touched_rows[0]),
        "incremental_seconds": round(inc.seconds, 2),
        "incremental_cpu_seconds": round(inc_cpu, 1),
        "incremental_rows_per_second": round(touched_rows[0] / inc.seconds),
        "incremental_load_average_1_5_15": [round(x, 2) for x in load_inc],
        "incremental_equals_full": before == after,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
