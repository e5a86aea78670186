"""End-to-end ingest throughput: read, guard, GX, load, against a raw DuckDB read_csv + INSERT.

    .venv/bin/python -m benchmarks.bench_ingest --rows 1000000 [--clinics 5] [--files-per-clinic 1]
    .venv/bin/python -m benchmarks.bench_ingest --profile   # where a small file's time goes

Writes reference-format CSVs (vectorized, numpy) for `--clinics` clinics, then in one process:
1. the baseline: `create table ... as select * from read_csv(...)` of every file into a fresh
   DuckDB file (the cheapest way DuckDB can get the same bytes in);
2. the pipeline: `ingest_all` (read -> de-identification guard -> canonicalize -> GX -> stage ->
   one transaction per file) into another fresh warehouse, timing every stage.
Prints one JSON document (rows/s, ratio to the baseline, peak RSS, seconds per stage) and, with
`--out`, writes it there. Peak RSS is the process's high-water mark (psutil / ru_maxrss).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines import registry

# one row per administered measure; a session carries these instruments
SESSION_INSTRUMENTS = ("SRS", "ORS", "WAI-SR", "PHQ-9", "GAD-7")
SESSIONS_PER_CLIENT = 20
HEADER = list(registry.REFERENCE_MEASURE_COLUMNS)


def write_reference_csv(path: Path, n_rows: int, seed: int, client_offset: int = 0) -> int:
    """A reference-format measures CSV with `n_rows` valid rows (whole sessions); returns rows."""
    rng = np.random.default_rng(seed)
    per_client = SESSIONS_PER_CLIENT * len(SESSION_INSTRUMENTS)
    n_clients = max(1, -(-n_rows // per_client))
    client = np.repeat(np.arange(n_clients), per_client)[:n_rows]
    within = np.tile(np.arange(per_client), n_clients)[:n_rows]
    session = within // len(SESSION_INSTRUMENTS) + 1
    instrument = np.array(SESSION_INSTRUMENTS)[within % len(SESSION_INSTRUMENTS)]
    start = np.datetime64("2024-01-01") + (client % 300).astype("timedelta64[D]")
    date = start + ((session - 1) * 7).astype("timedelta64[D]")
    frame: dict[str, Any] = {
        "client_id": np.char.add("C", (client + client_offset).astype(str)),
        "clinician_id": np.char.add("T", (client % 17).astype(str)),
        "session_date": date.astype(str),
        "session_number": session,
        "instrument": instrument,
    }
    items = np.full((n_rows, 12), np.nan)
    totals = np.zeros(n_rows)
    for name in SESSION_INSTRUMENTS:
        spec = registry.INSTRUMENTS[name]
        rows = np.flatnonzero(instrument == name)
        steps = int(round((spec.item_max - spec.item_min) / spec.item_step))
        values = spec.item_min + rng.integers(0, steps + 1, (len(rows), spec.n_items)) * (
            spec.item_step
        )
        values = np.round(values, 1)
        items[np.ix_(rows, np.arange(spec.n_items))] = values
        total = values.mean(axis=1) if spec.scoring == "mean" else values.sum(axis=1)
        totals[rows] = np.round(total, 3)
    for i, col in enumerate(registry.ITEM_COLUMNS):
        frame[col] = items[:, i]
    frame["total"] = totals
    pd.DataFrame(frame, columns=HEADER).to_csv(path, index=False, float_format="%.10g")
    return n_rows


def make_landing(root: Path, rows: int, clinics: int, files_per_clinic: int) -> dict[str, Any]:
    """config/clinics/*.yaml + landing/<clinic>/measures_*.csv totalling `rows` rows."""
    (root / "config" / "clinics").mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    per_file = rows // (clinics * files_per_clinic)
    for c in range(clinics):
        cid = f"bench_{c}"
        (root / "config" / "clinics" / f"{cid}.yaml").write_text(
            f"clinic_id: {cid}\ntimezone: Europe/Berlin\nformat: reference\n", encoding="utf-8"
        )
        folder = root / "landing" / cid
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_clinic):
            path = folder / f"measures_{f:03d}.csv"
            write_reference_csv(path, per_file, seed=c * 1000 + f, client_offset=f * 10**7)
            files.append(path)
    return {"files": files, "rows": per_file * clinics * files_per_clinic}


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: writing 5 to clear_refs resets VmHWM), so the peak
    measured next belongs to the pipeline, not to generating the input or the raw baseline."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident set size since the last reset, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TreeMemory:
    """Peak memory of this process and its children (the prepare workers), sampled every 250 ms:
    the sum of RSS (counts pages the forked workers share with this process once per process,
    so it over-states) and the sum of PSS (shares those pages out: the machine's real cost)."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._psutil = psutil
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = self._psutil.Process()
        rss = pss = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                info = p.memory_full_info()
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> TreeMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def raw_duckdb_load(files: list[Path], db: Path) -> float:
    """Seconds for DuckDB alone to read the same CSVs and insert them into one table."""
    t0 = time.perf_counter()
    conn = duckdb.connect(str(db))
    conn.execute(
        "create table raw_measures as select * from read_csv(?, header = true) limit 0",
        [str(files[0])],
    )
    for f in files:
        conn.execute("insert into raw_measures select * from read_csv(?, header = true)", [str(f)])
    conn.execute("checkpoint")
    conn.close()
    return time.perf_counter() - t0


class StageTimer:
    """Wraps module functions to add up wall seconds per stage (the pipeline is sequential)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, module: Any, name: str, stage: str) -> None:
        original = getattr(module, name, None)
        if original is None:  # another engineer's internal function that no longer exists
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0
                self.calls[stage] += 1

        setattr(module, name, timed)
        self._undo.append(lambda: setattr(module, name, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()


@contextlib.contextmanager
def timed_stages() -> Iterator[StageTimer]:
    from pipelines import validation, warehouse
    from pipelines.ingest import guard as deid
    from pipelines.ingest import orchestrate
    from pipelines.ingest import parts as batching
    from pipelines.ingest import read as readers
    from pipelines.validation import run as validation_run

    t = StageTimer()
    t.wrap(readers, "read_raw", "read")
    t.wrap(deid, "check_header", "guard")
    t.wrap(deid, "scan_values", "guard")
    t.wrap(readers, "canonicalize", "canonicalize")
    t.wrap(validation_run, "judge", "gx_engine")  # the distinct-value engine
    t.wrap(validation, "validate", "validate_total")
    t.wrap(orchestrate, "load_staged", "load")
    t.wrap(batching, "write_chunks", "split")
    _ = warehouse
    try:
        yield t
    finally:
        t.restore()


def run_pipeline(root: Path, warehouse_path: Path, docs: bool) -> tuple[float, StageTimer, Any]:
    import great_expectations  # noqa: F401

    import pipelines.validation  # noqa: F401  (import cost outside the timed run)
    from pipelines.ingest.run import ingest_all

    with timed_stages() as timer:
        t0 = time.perf_counter()
        results = ingest_all(
            root / "config",
            root / "landing",
            warehouse_path,
            docs_dir=(root / "docs") if docs else None,
        )
        secs = time.perf_counter() - t0
    return secs, timer, results


def bench(rows: int, clinics: int, files_per_clinic: int, docs: bool) -> dict[str, Any]:
    """Generate the files here, then measure in a fresh process (as `alliance-watch ingest`
    runs): the raw DuckDB load and the pipeline share that process, and neither inherits the
    generator's memory (the prepare workers are forked from it)."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="aw-bench-") as d:
        root = Path(d)
        t0 = time.perf_counter()
        landing = make_landing(root, rows, clinics, files_per_clinic)
        gen_s = time.perf_counter() - t0
        (root / "files.json").write_text(json.dumps([str(f) for f in landing["files"]]))
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_ingest", "--measure", str(root)]
            + (["--docs"] if docs else []),
            check=True,
            capture_output=True,
            text=True,
        )
        out: dict[str, Any] = json.loads(done.stdout)
        size = sum(f.stat().st_size for f in landing["files"])
        return {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "rows": landing["rows"],
            "clinics": clinics,
            "files": len(landing["files"]),
            "csv_mb": round(size / 1e6, 1),
            "data_docs": docs,
            "generate_s": round(gen_s, 2),
            **out,
            "rows_per_s": round(landing["rows"] / out["pipeline_s"]),
            "floor": {"rows_per_s": 250_000, "ratio_to_raw": 15, "peak_rss_mb": 1536},
        }


def measure(root: Path, docs: bool) -> dict[str, Any]:
    """In a fresh process: the raw DuckDB load of the generated files, then the pipeline."""
    files = [Path(f) for f in json.loads((root / "files.json").read_text())]
    raw_s = raw_duckdb_load(files, root / "raw.duckdb")
    (root / "raw.duckdb").unlink()
    before_mb = peak_rss_mb()
    import gc

    gc.collect()
    reset = reset_peak_rss()
    with TreeMemory() as tree:
        secs, timer, results = run_pipeline(root, root / "warehouse.duckdb", docs)
    bad = [r for r in results if r.status not in ("loaded",)]
    return {
        "raw_duckdb_s": round(raw_s, 2),
        "pipeline_s": round(secs, 2),
        "ratio_to_raw": round(secs / raw_s, 2),
        # the loading process alone (the high-water mark since the reset, when it worked)
        "peak_rss_mb": round(peak_rss_mb()),
        # with the prepare workers, sampled every 250 ms: RSS sums count the pages the workers
        # share with their parent once per process; PSS shares them out (the machine's cost)
        "peak_tree_rss_mb": round(tree.peak_rss / 2**20),
        "peak_tree_pss_mb": round(tree.peak_pss / 2**20),
        "prepare_workers": int(os.environ.get("ALLIANCE_WATCH_PREPARE_WORKERS") or 0)
        or os.cpu_count(),
        "peak_rss_reset": reset,
        "peak_rss_before_pipeline_mb": round(before_mb),
        "rows_loaded": sum(r.rows_loaded for r in results),
        "files_not_clean": [(r.file_name, r.status, r.top_reasons[:2]) for r in bad],
        "stage_s": {k: round(v, 2) for k, v in sorted(timer.seconds.items())},
        "stage_calls": dict(timer.calls),
    }


def profile(n_files: int, rows: int, docs: bool) -> dict[str, Any]:
    """Fixed per-file cost: `n_files` small files of one clinic, seconds per stage per file."""
    out = bench(rows * n_files, 1, n_files, docs)
    out["per_file_s"] = {k: round(v / n_files, 3) for k, v in out["stage_s"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--clinics", type=int, default=5)
    ap.add_argument("--files-per-clinic", type=int, default=1)
    ap.add_argument("--docs", action="store_true", help="also build GX Data Docs")
    ap.add_argument("--profile", action="store_true", help="10 files of 300 rows, per-file cost")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here")
    ap.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:  # the child process of `bench`
        print(json.dumps(measure(args.measure, args.docs), default=str))
        return 0
    if args.profile:
        result = profile(10, 300, args.docs)
    else:
        result = bench(args.rows, args.clinics, args.files_per_clinic, args.docs)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
