"""Validation cost per 1M rows, and its share of the whole ingest of the same file.

Writes a reference-format measures CSV of N rows (all five instruments, ~2 % bad rows), then
times each ingest stage on it (read, header guard, value scan, canonicalize, GX validate with
and without Data Docs) and the full `ingest_all` into a fresh DuckDB file.

    .venv/bin/python benchmarks/bench_validate.py --rows 1000000

Prints one line per stage with seconds and seconds per 1M rows, and writes them to
``benchmarks/results/validate.json``. GX runs on the distinct value combinations each rule
reads and remembers its verdicts per process, so the first validation in a process ("cold") pays
for judging every combination and later ones ("warm": the next part or file of a run) only for
new combinations. The fixed per-file cost is measured on a small file (2,000 rows) with Data Docs.
``--compare-full`` also times the plain full-frame GX run (slow: about a minute per 1M rows).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from pipelines import validation
from pipelines.config import ClinicConfig
from pipelines.ingest import guard as deid
from pipelines.ingest import read as readers
from pipelines.ingest.run import ingest_all
from pipelines.registry import INSTRUMENTS

HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)


def write_csv(path: Path, n: int, seed: int = 7) -> None:
    """N rows: one measure per (client, session, instrument); ~2 % with one broken value."""
    rng = np.random.default_rng(seed)
    codes = list(INSTRUMENTS)
    instrument = np.array(codes)[np.arange(n) % len(codes)]
    client = np.arange(n) // (len(codes) * 20)
    session = (np.arange(n) // len(codes)) % 20 + 1
    lines = [HEADER]
    days = rng.integers(0, 700, n)
    bad = rng.random(n) < 0.02
    for code in codes:
        ins = INSTRUMENTS[code]
        sel = np.flatnonzero(instrument == code)
        span = int(ins.item_max - ins.item_min)
        items = rng.integers(0, span + 1, (len(sel), ins.n_items)) + ins.item_min
        items[bad[sel], 0] = ins.item_max + 1  # out of range
        blocks = [
            ",".join(
                [
                    f"C{client[i]:07d}",
                    f"T{client[i] % 50:03d}",
                    str(np.datetime64("2023-01-01") + int(days[i])),
                    str(session[i]),
                    code,
                    *(f"{v:g}" for v in items[j]),
                    *([""] * (12 - ins.n_items)),
                    "",
                ]
            )
            for j, i in enumerate(sel)
        ]
        lines.extend(blocks)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--compare-full", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "validate.json"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    n = args.rows
    per_m = 1_000_000 / n
    cfg = ClinicConfig(clinic_id="bench", timezone="Europe/Berlin", format="reference")
    cfg = cfg.model_copy(update={"max_field_bytes": 4096})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config" / "clinics").mkdir(parents=True)
        (root / "config" / "clinics" / "bench.yaml").write_text(
            "clinic_id: bench\ntimezone: Europe/Berlin\nformat: reference\n", encoding="utf-8"
        )
        (root / "landing" / "bench").mkdir(parents=True)
        csv = root / "landing" / "bench" / "measures_bench.csv"
        t0 = time.perf_counter()
        write_csv(csv, n)
        print(
            f"wrote {n} rows ({csv.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s"
        )

        import great_expectations  # noqa: F401  (the one-off import is not a per-row cost)

        timings: dict[str, float] = {}

        def timed(name: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
            s = time.perf_counter()
            out = fn(*a, **kw)
            timings[name] = time.perf_counter() - s
            return out

        raw = timed("read_raw", readers.read_raw, csv, "measures", cfg)
        timed("deid.check_header", deid.check_header, raw.header, "measures")
        _, mask = timed("deid.scan_values", deid.scan_values, raw.table, cfg)
        typed, _ = timed("canonicalize", readers.canonicalize, raw, cfg)
        issues, _ = timed(
            "validate (cold process, no Data Docs)",
            validation.validate,
            typed,
            "measures",
            cfg,
            None,
            redaction=mask,
            raw=raw.table,
        )
        timed(
            "validate (warm, + Data Docs)",
            validation.validate,
            typed,
            "measures",
            cfg,
            root / "docs1",
            redaction=mask,
            raw=raw.table,
        )
        if args.compare_full:
            timed(
                "validate (plain full-frame GX)",
                validation.validate,
                typed,
                "measures",
                cfg,
                None,
                redaction=mask,
                raw=raw.table,
                strategy="full",
            )
        # Fixed cost per file: a small delivery of new clients, validated with Data Docs.
        small = root / "small.csv"
        write_csv(small, 2000, seed=11)
        small_raw = readers.read_raw(small, "measures", cfg)
        small_typed, _ = readers.canonicalize(small_raw, cfg)
        fixed: dict[str, float] = {}
        for label in ("small file, + Data Docs (1st)", "small file, + Data Docs (2nd)"):
            s0 = time.perf_counter()
            validation.validate(
                small_typed, "measures", cfg, root / "docs3", raw=small_raw.table, file_name=label
            )
            fixed[label] = time.perf_counter() - s0
        s0 = time.perf_counter()
        validation.validate(
            small_typed,
            "measures",
            cfg,
            root / "docs3",
            raw=small_raw.table,
            file_name="deferred",
            build_docs=False,
        )
        fixed["small file, Data Docs deferred"] = time.perf_counter() - s0
        s0 = time.perf_counter()
        validation.build_data_docs(root / "docs3")
        fixed["build_data_docs (3 pages)"] = time.perf_counter() - s0
        (root / "wh").mkdir()
        results = timed(
            "ingest_all (whole file)",
            ingest_all,
            root / "config",
            root / "landing",
            root / "wh" / "w.duckdb",
            root / "docs2",
        )
        r = results[0]
        print(
            f"ingest: status={r.status} in={r.rows_in} loaded={r.rows_loaded} "
            f"quarantined={r.rows_quarantined} duplicate={r.rows_duplicate}; "
            f"rows with issues in validate: {issues['row'].nunique()}"
        )
        total = timings["ingest_all (whole file)"]
        for name, sec in timings.items():
            share = (
                f"{100 * sec / total:5.1f}% of ingest" if name != "ingest_all (whole file)" else ""
            )
            print(f"{name:30s} {sec:8.2f}s  {sec * per_m:8.1f}s per 1M rows  {share}")
        for name, sec in fixed.items():
            print(f"{name:30s} {sec:8.2f}s  (fixed per file)")
        guard_and_gx = timings["deid.scan_values"] + timings["validate (warm, + Data Docs)"]
        print(
            f"validation (guard + GX + docs) = {guard_and_gx * per_m:.1f}s per 1M rows, "
            f"{100 * guard_and_gx / total:.0f}% of the ingest of this file"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "rows": n,
                    "seconds": {k: round(v, 3) for k, v in timings.items()},
                    "seconds_per_1m_rows": {k: round(v * per_m, 2) for k, v in timings.items()},
                    "fixed_per_file_seconds": {k: round(v, 3) for k, v in fixed.items()},
                    "ingest": {
                        "status": r.status,
                        "rows_in": r.rows_in,
                        "rows_loaded": r.rows_loaded,
                        "rows_quarantined": r.rows_quarantined,
                    },
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
