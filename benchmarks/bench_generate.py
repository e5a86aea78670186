"""How fast the simulator generates canonical measurement rows (target: 1M rows in seconds).

    .venv/bin/python benchmarks/bench_generate.py [--rows 1000000] [--write DIR]

Prints rows, seconds and rows/s for the in-memory cohort, and optionally for writing every
clinic's landing files in its own format.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from pipelines.simulate.cohort import SimParams, default_clinics, simulate
from pipelines.simulate.dataset import write_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--write", action="store_true", help="also write the landing files")
    args = ap.parse_args()
    specs = default_clinics(4)
    # ~9 sessions per client in a one-year window, ~2.4 measures per session on average
    per_clinic = max(1, int(args.rows / 4 / 22))
    params = SimParams(
        n_clients=per_clinic, start_date=dt.date(2025, 1, 1), end_date=dt.date(2025, 12, 31)
    )
    t0 = time.perf_counter()
    cohorts = simulate(specs, params, seed=1)
    secs = time.perf_counter() - t0
    rows = sum(len(c.measures) for c in cohorts.values())
    print(f"simulate: {rows} measurement rows in {secs:.2f} s = {rows / secs:,.0f} rows/s")
    if args.write:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            summary = write_dataset(Path(d), specs, cohorts)
            secs = time.perf_counter() - t0
        print(f"write: {summary.n_files} files in {secs:.2f} s = {rows / secs:,.0f} rows/s")


if __name__ == "__main__":
    main()
