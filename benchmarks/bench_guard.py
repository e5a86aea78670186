"""The de-identification guard as a classifier, on the labelled corpus of
`tests/guard_corpus.py` (synthetic values only): the false-positive rate of every pseudonym
family on 100,000 generated codes each, the guard's miss rate and the exposure rate (a value
neither flagged nor withheld by its column's shape, so it could be stored as delivered) of every
identifier family in every column kind (codes, dates, scores, other), and the rate at which
legitimate dates, scores and labels are flagged. Writes `benchmarks/results/guard.json`.

    .venv/bin/python benchmarks/bench_guard.py [--codes 100000] [--identifiers 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from guard_corpus import (  # noqa: E402
    IDENTIFIER_FAMILIES,
    KINDS,
    LEGIT_OF_KIND,
    NOT_APPLICABLE,
    PSEUDONYM_FAMILIES,
    SHAPE_PROTECTED,
    Family,
    config_for,
    judge,
)

from pipelines.ingest.guard import GUARD_VERSION  # noqa: E402

# Shapes a phone number can take too, reported apart (not a family of the acceptance): with
# the default pattern they may be held back; a declared client pattern lets them through.
AMBIGUOUS = (
    Family(
        "numeric site-year-sequence, zero-padded site (01-2018-0042), default pattern",
        "01-2018-0042",
        lambda rng, n: [
            f"{s:02d}-{y}-{q:04d}"
            for s, y, q in zip(
                rng.integers(1, 10, n), rng.integers(1995, 2031, n), rng.integers(1, 10**4, n),
                strict=True,
            )
        ],
    ),
    Family(
        "numeric site-year-sequence, zero-padded site (01-2018-0042), declared pattern",
        "01-2018-0042",
        lambda rng, n: [
            f"{s:02d}-{y}-{q:04d}"
            for s, y, q in zip(
                rng.integers(1, 10, n), rng.integers(1995, 2031, n), rng.integers(1, 10**4, n),
                strict=True,
            )
        ],
        r"^\d{2}-\d{4}-\d{4}$",
    ),
)  # fmt: skip


def _examples(values: list[str], hits: np.ndarray, k: int = 5) -> list[str]:
    return sorted({v for v, h in zip(values, hits, strict=True) if h})[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codes", type=int, default=100_000, help="codes per pseudonym family")
    ap.add_argument("--identifiers", type=int, default=20_000, help="values per identifier family")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "guard.json")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    pseudonyms = []
    for fam in (*PSEUDONYM_FAMILIES, *AMBIGUOUS):
        values = fam.make(rng, args.codes)
        t = time.perf_counter()
        flagged, _ = judge(values, "codes", config_for(fam))
        pseudonyms.append(
            {
                "family": fam.name,
                "example": fam.example,
                "declared_client_pattern": fam.client_pattern,
                "column_kind": "codes",
                "codes": len(values),
                "distinct": len(set(values)),
                "false_positives": int(flagged.sum()),
                "false_positive_rate": float(flagged.mean()),
                "acceptance": fam in PSEUDONYM_FAMILIES,
                "examples_flagged": _examples(values, flagged),
                "seconds": round(time.perf_counter() - t, 3),
            }
        )
    legit = []
    for kind, fam in LEGIT_OF_KIND.items():
        values = fam.make(rng, args.codes)
        flagged, _ = judge(values, kind, config_for(fam))
        legit.append(
            {
                "family": fam.name,
                "column_kind": kind,
                "values": len(values),
                "false_positives": int(flagged.sum()),
                "false_positive_rate": float(flagged.mean()),
                "examples_flagged": _examples(values, flagged),
            }
        )
    identifiers = []
    for fam in IDENTIFIER_FAMILIES:
        values = fam.make(rng, args.identifiers)
        for kind in KINDS:
            if (fam.name, kind) in NOT_APPLICABLE:
                identifiers.append(
                    {"family": fam.name, "column_kind": kind, "not_applicable": True}
                )
                continue
            flagged, exposed = judge(values, kind, config_for(fam))
            identifiers.append(
                {
                    "family": fam.name,
                    "column_kind": kind,
                    "values": len(values),
                    "guard_miss_rate": float(1 - flagged.mean()),
                    "exposed": int(exposed.sum()),
                    "exposure_rate": float(exposed.mean()),
                    "protected_by_shape": (fam.name, kind) in SHAPE_PROTECTED,
                    "examples_missed": _examples(values, ~flagged),
                    "examples_exposed": _examples(values, exposed),
                }
            )
    out = {
        "benchmark": "bench_guard",
        "guard_version": GUARD_VERSION,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
        "pseudonym_families": pseudonyms,
        "legitimate_values": legit,
        "identifier_families": identifiers,
        "acceptance": {
            "every_pseudonym_family_fp_at_most_0.01%": all(
                p["false_positive_rate"] <= 1e-4 for p in pseudonyms if p["acceptance"]
            ),
            "at_least_100000_codes_per_family": all(
                p["codes"] >= 100_000 for p in pseudonyms if p["acceptance"]
            ),
            "no_identifier_exposed": all(i.get("exposed", 0) == 0 for i in identifiers),
            "no_guard_miss_outside_shape_protected_pairs": all(
                i["guard_miss_rate"] == 0
                for i in identifiers
                if not i.get("not_applicable") and not i["protected_by_shape"]
            ),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for p in pseudonyms:
        print(f"FP {p['false_positive_rate']:.5%}  {p['codes']:>7}  {p['family']}")
    for i in identifiers:
        if not i.get("not_applicable"):
            print(
                f"miss {i['guard_miss_rate']:.4%} exposed {i['exposure_rate']:.4%}  "
                f"{i['family']} / {i['column_kind']}"
            )
    print(json.dumps(out["acceptance"]), f"({out['seconds']} s) -> {args.out}")


if __name__ == "__main__":
    main()
