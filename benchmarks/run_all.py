"""`make bench`: run every benchmark in its own process, one after the other (they measure
throughput and peak RSS, so they must not share a process or the two cores), and keep what
each prints under benchmarks/results/.

    .venv/bin/python -m benchmarks.run_all [--only ingest_1m,ingest_5m] [--quick]

`--quick` runs the ingest benchmark at 100k rows only (a smoke run, minutes not an hour).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

BENCHMARKS: dict[str, list[str]] = {
    "ingest_1m": [
        "-m",
        "benchmarks.bench_ingest",
        "--rows",
        "1000000",
        "--clinics",
        "5",
        "--out",
        str(RESULTS / "ingest_1m.json"),
    ],
    "ingest_5m": [
        "-m",
        "benchmarks.bench_ingest",
        "--rows",
        "5000000",
        "--clinics",
        "5",
        "--out",
        str(RESULTS / "ingest_5m.json"),
    ],
    "ingest_profile": [
        "-m",
        "benchmarks.bench_ingest",
        "--profile",
        "--out",
        str(RESULTS / "ingest_profile.json"),
    ],
    "generate": ["benchmarks/bench_generate.py"],
    "detect": ["benchmarks/bench_detect.py"],
    "validate": ["benchmarks/bench_validate.py"],
    "guard": ["benchmarks/bench_guard.py"],
    "digest": ["-m", "benchmarks.bench_digest", "--smtp", "--out", str(RESULTS / "digest.json")],
    "detect_grid": ["benchmarks/eval_grid.py"],
    "detect_independent": ["benchmarks/independent_cohort.py"],
    "answers": ["-m", "benchmarks.bench_answers", "--out", str(RESULTS / "answers.json")],
}
QUICK = {
    "ingest_quick": [
        "-m",
        "benchmarks.bench_ingest",
        "--rows",
        "100000",
        "--clinics",
        "5",
        "--out",
        str(RESULTS / "ingest_quick.json"),
    ],
}


def ingest_table() -> str:
    """A markdown table of the ingest results on disk, against the acceptance floor."""
    lines = [
        "| run | rows | files | pipeline s | rows/s | raw DuckDB s | ratio | peak RSS MB "
        "| all processes PSS MB | all processes RSS sum MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = ("ingest_quick", "ingest_profile", "ingest_1m_gx_v1", "ingest_5m_gx_v1")
    for name in (*names, "ingest_1m", "ingest_5m"):
        f = RESULTS / f"{name}.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        lines.append(
            f"| {name} | {r['rows']:,} | {r['files']} | {r['pipeline_s']} | {r['rows_per_s']:,} "
            f"| {r['raw_duckdb_s']} | {r['ratio_to_raw']} | {r['peak_rss_mb']} "
            f"| {r.get('peak_tree_pss_mb', '-')} | {r.get('peak_tree_rss_mb', '-')} |"
        )
    lines.append("| floor | | | | >= 250,000 | | <= 15 | | | <= 1536 (5M) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated names: " + ", ".join(BENCHMARKS))
    ap.add_argument("--quick", action="store_true", help="a 100k-row ingest smoke run only")
    args = ap.parse_args(argv)
    todo = QUICK if args.quick else BENCHMARKS
    if args.only:
        todo = {k: v for k, v in BENCHMARKS.items() if k in args.only.split(",")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, cmd in todo.items():
        script = ROOT / cmd[0]
        if cmd[0].endswith(".py") and not script.exists():
            print(f"{name}: {cmd[0]} not present, skipped")
            continue
        print(f"{name}: running", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        (RESULTS / f"{name}.txt").write_text(done.stdout + done.stderr[-4000:], encoding="utf-8")
        print(f"{name}: exit {done.returncode} in {secs:.0f} s", flush=True)
        if done.returncode:
            failed.append(name)
    (RESULTS / "ingest.md").write_text(ingest_table(), encoding="utf-8")
    print(ingest_table())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
