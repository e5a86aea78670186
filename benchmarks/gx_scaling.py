"""How GX validation time splits into a fixed part per call and a part per row.

    .venv/bin/python -m benchmarks.gx_scaling [--sizes 300,10000,50000,150000]

Validates reference-format tables of increasing size (one `validate.validate` call each, no
Data Docs, after one warm-up call) and fits seconds = fixed + per_row * rows by least squares;
prints JSON. Seconds are this process's CPU time, so other work on the machine does not skew
them (every stage here is single-threaded).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_ingest import make_landing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,30000,100000,200000")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import great_expectations  # noqa: F401  (import cost not counted)

    from pipelines import validation
    from pipelines.config import load_clinic_configs
    from pipelines.ingest import guard as deid
    from pipelines.ingest import read as readers

    sizes = [int(s) for s in args.sizes.split(",")]
    points = []
    with tempfile.TemporaryDirectory() as d:
        for i, n in enumerate([min(sizes), *sizes]):
            root = Path(d) / f"{i}-{n}"
            landing = make_landing(root, n, 1, 1)
            configs, _ = load_clinic_configs(root / "config")
            cfg = next(iter(configs.values()))
            path = landing["files"][0]
            t0 = time.process_time()
            raw = readers.read_raw(path, "measures", cfg)
            t1 = time.process_time()
            _, redact = deid.scan_values(raw.table, cfg)
            t2 = time.process_time()
            typed, _ = readers.canonicalize(raw, cfg)
            t3 = time.process_time()
            validation.validate(typed, "measures", cfg, redaction=redact, raw=raw.table)
            t4 = time.process_time()
            if i == 0:
                continue  # the warm-up: GX loads its expectation classes on first use
            points.append(
                {
                    "rows": n,
                    "read": t1 - t0,
                    "guard": t2 - t1,
                    "canonicalize": t3 - t2,
                    "validate": t4 - t3,
                }
            )
    rows = np.array([p["rows"] for p in points], dtype=float)
    fit = {}
    for stage in ("read", "guard", "canonicalize", "validate"):
        secs = np.array([p[stage] for p in points])
        per_row, fixed = np.polyfit(rows, secs, 1)
        fit[stage] = {"fixed_s": round(float(fixed), 3), "per_row_us": round(per_row * 1e6, 2)}
    out = {"points": [{k: round(v, 3) for k, v in p.items()} for p in points], "fit": fit}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
