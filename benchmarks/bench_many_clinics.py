"""Many clinics delivering at once on the real event-driven stack (`make up`: the components of
`airflow standalone`, LocalExecutor, SQLite, the single-writer pool), issue #20 item 2.

For each clinic count: generate that many clinics (`alliance-watch generate`, the sample
clinics' varied formats), start the stack, wait until it is idle, write every clinic's marker
at once, and watch the analyst snapshot until every clinic's flags are those of a full
recompute of the same warehouse. Reports, from the markers:
* marker -> flags per clinic (when the clinic's flags in the snapshot first equal its final
  ones), the median and the last;
* task instances the runs created (ingest and detection), and per task: count, mean wait in
  the queue, mean running time;
* writer-slot occupancy: the share of the wall time (markers -> last clinic's flags) in which
  a task of the `duckdb_writer` pool was running (and, counting queued tasks, which Airflow
  also counts against the pool, held);
* the load average when the markers were written and at the end (the machine is shared).

    .venv/bin/python -m benchmarks.bench_many_clinics [--clinics 10 50] [--clients 40]
        [--period all] [--out benchmarks/results/many_clinics.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.stack import (  # noqa: E402
    Stack,
    digest,
    full_recompute_flags,
    generate,
    stack_env,
    wait,
)


def _ts(value: str | None) -> float | None:
    if value is None:
        return None
    t = dt.datetime.fromisoformat(value.replace(" ", "T"))
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] covered by the intervals."""
    total, end = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def run_once(clinics: int, clients: int, period: str, seed: int, keep: Path | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"aw-many-{clinics}-"))
    home = tmp / "home"
    ids = generate(home, seed, clinics, clients, period)
    files = sum(1 for c in ids for p in (home / "landing" / c).iterdir() if p.is_file())
    env = stack_env(home)
    s = Stack(home)
    try:
        s.start(env, clinics, up_timeout=600, ready_timeout=600, runs_timeout=300, idle_timeout=300)
        time.sleep(2)
        load_at_markers = os.getloadavg()
        t0 = time.time()
        for clinic in ids:
            (home / "inbox" / f"{clinic}.ready").touch()
        t_markers = time.time()
        history: list[tuple[float, dict[str, str]]] = []

        def record() -> None:
            rows = s.snapshot_flags()
            per = {c: digest([r for r in rows if r[0] == c]) for c in ids}
            if not history or history[-1][1] != per:
                history.append((time.time() - t0, per))

        def done() -> bool:
            record()
            finished = s.sql(
                "select count(*) from dag_run where dag_id like 'ingest_%' and state = 'success'"
            )
            return finished == [(clinics,)] and s.idle()

        wait("every ingest and its detection", done, 3600, every=0.5)
        time.sleep(3)
        wait("an idle stack", s.idle, 300)
        record()
        load_at_end = os.getloadavg()
        failed = s.sql("select dag_id, run_id from dag_run where state = 'failed'")

        expected_rows = full_recompute_flags(s, home, tmp / "full.duckdb", env)
        expected = {c: digest([r for r in expected_rows if r[0] == c]) for c in ids}
        reached: dict[str, float | None] = {}
        for c in ids:
            reached[c] = next((t for t, per in history if per[c] == expected[c]), None)
            # equal at some point and still equal at the end
            if history[-1][1][c] != expected[c]:
                reached[c] = None
        measurements = s.read(
            home / "warehouse" / "alliance.duckdb", "select count(*) from measurements"
        )

        floor = dt.datetime.fromtimestamp(t0 - 1, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        tis = s.sql(
            "select ti.dag_id, ti.task_id, ti.pool, ti.state, ti.queued_dttm, ti.start_date, "
            "ti.end_date from task_instance ti join dag_run r "
            "on r.dag_id = ti.dag_id and r.run_id = ti.run_id where r.queued_at >= ?",
            [floor],
        )
        ok = [v for v in reached.values() if v is not None]
        t_all = max(ok) if len(ok) == len(ids) else None
        window_end = t0 + (t_all if t_all is not None else history[-1][0])
        running = [
            (_ts(st), _ts(en))
            for _, _, pool, _, _, st, en in tis
            if pool == "duckdb_writer" and st and en
        ]
        held = [
            (_ts(q) or _ts(st), _ts(en))
            for _, _, pool, _, q, st, en in tis
            if pool == "duckdb_writer" and (q or st) and en
        ]
        window = window_end - t0
        per_task: dict[str, dict[str, float]] = {}
        for dag_id, task_id, _, _state, q, st, en in tis:
            key = f"{'ingest' if dag_id.startswith('ingest_') else dag_id}.{task_id}"
            d = per_task.setdefault(key, {"n": 0, "ran": 0, "wait_s": 0.0, "run_s": 0.0})
            d["n"] += 1
            if st and en:
                d["ran"] += 1
                d["run_s"] += _ts(en) - _ts(st)  # type: ignore[operator]
                if q:
                    d["wait_s"] += _ts(st) - _ts(q)  # type: ignore[operator]
        for d in per_task.values():
            ran = d.pop("ran") or 1
            d["mean_wait_s"] = round(d.pop("wait_s") / ran, 2)
            d["mean_run_s"] = round(d.pop("run_s") / ran, 2)
        out = {
            "clinics": clinics,
            "clients_per_clinic": clients,
            "period": period,
            "files": files,
            "measurements": measurements[0][0],
            "flags": len(expected_rows),
            "marker_spread_s": round(t_markers - t0, 3),
            "marker_to_flags_s": {
                c: (round(v, 1) if v is not None else None) for c, v in reached.items()
            },
            "median_marker_to_flags_s": round(statistics.median(ok), 1) if ok else None,
            "all_clinics_flags_s": round(t_all, 1) if t_all is not None else None,
            "clinics_never_matching": sorted(c for c, v in reached.items() if v is None),
            "task_instances": len(tis),
            "task_instances_by_task": per_task,
            "writer_slot_running_share": round(_union(running, t0, window_end) / window, 3),  # type: ignore[arg-type]
            "writer_slot_held_share": round(_union(held, t0, window_end) / window, 3),  # type: ignore[arg-type]
            "failed_runs": failed,
            "loadavg_at_markers": [round(x, 2) for x in load_at_markers],
            "loadavg_at_end": [round(x, 2) for x in load_at_end],
            "cores": os.cpu_count(),
        }
        return out
    finally:
        s.stop(env, timeout=300)
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clinics", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--period", choices=["month", "quarter", "all"], default="all")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--label", default="", help="a note stored with the figures (the code measured)"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "many_clinics.json"
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated homes")
    args = ap.parse_args(argv)
    results = []
    for n in args.clinics:
        r = run_once(n, args.clients, args.period, args.seed, Path("keep") if args.keep else None)
        r["label"] = args.label
        print(json.dumps(r, indent=1), flush=True)
        results.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps(previous + results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
