"""An independent cohort: detection scored on data from a model it was never tuned on.

The grid (pipelines/detect/worlds.py) and the sample clinics (pipelines/simulate/cohort.py) share the project's
own ideas of what alliance data looks like. This generator shares no code with either and is
never used for tuning; it answers "does the detector hold on someone else's model?"
(issue 15). Its model, per client:

* a latent alliance on a logit-like scale: the client's own level, a slow drift, and an AR(1)
  process (phi 0.3-0.7, drawn per client) of session-to-session variation, with a per-client
  innovation SD drawn log-uniformly;
* items as responses to that latent: SRS items are visual-analogue marks (0-10 cm, read to
  0.1), WAI-SR items 1-5 Likert answers from an ordered-probit response with per-item
  thresholds; each item has its own loading and bias, and item-specific noise;
* the ceiling by censoring: a mark past the end of the line is the end of the line;
* ruptures as latent shocks, on the bond items, the goal/task items or every item, with a size
  drawn in the client's own within-client SDs of the observed total (measured from the client's
  rupture-free sessions of a twin draw), that repair geometrically (half-life 0.5-2 sessions)
  or never;
* clinic-level clients, two clinics (an SRS one and a WAI-SR one), 300 clients each.

Noise levels multiply the within-client variation (AR innovation and item noise) by 0.6, 1.0
and 1.6 with the ruptures' depth on the total fixed: at x0.6 the same ruptures are larger in the
client's own SDs, at x1.6 smaller. Each level is scored on seeds 31-33 with default settings
against the deployed rules (pipelines.detect.evaluate: recall at onset or next session, precision of
flagged sessions inside an active rupture, burden), and the detector with alert_budget 0.05.

    .venv/bin/python benchmarks/independent_cohort.py [--seeds 31 32 33]

Writes benchmarks/results/detect_independent.json and prints the table quoted in
docs/detection.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.detect.evaluate import METHODS, alliance_sessions, flagged_sessions, score  # noqa: E402
from pipelines.detect.grid import insert_canonical  # noqa: E402
from pipelines.detect.ruptures import DetectParams, detect  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOISE_LEVELS: tuple[float, ...] = (0.6, 1.0, 1.6)
SEEDS: tuple[int, ...] = (31, 32, 33)
N_CLIENTS = 300

# items of each part, 0-based (SRS: relationship | goals, approach; WAI-SR: Bond | Goal, Task)
PARTS: dict[str, dict[str, list[int]]] = {
    "SRS": {"bond": [0], "goal_task": [1, 2], "overall": [0, 1, 2, 3]},
    "WAI-SR": {
        "bond": [2, 4, 6, 8],
        "goal_task": [0, 1, 3, 5, 7, 9, 10, 11],
        "overall": list(range(12)),
    },
}


def _latent(
    rng: np.random.Generator, n: int, t: int, noise: float, level_mean: float
) -> tuple[np.ndarray, np.ndarray]:
    """Latent alliance paths (n, t) and each client's innovation SD."""
    level = rng.normal(level_mean, 0.8, n)
    drift = rng.normal(0.02, 0.03, n)
    phi = rng.uniform(0.3, 0.7, n)
    innov = np.exp(rng.uniform(np.log(0.12), np.log(0.6), n)) * noise
    x = np.zeros((n, t))
    e = rng.normal(0.0, 1.0, (n, t))
    x[:, 0] = e[:, 0] * innov / np.sqrt(1 - phi**2)
    for j in range(1, t):
        x[:, j] = phi * x[:, j - 1] + innov * e[:, j]
    return level[:, None] + drift[:, None] * np.arange(t)[None, :] + x, innov


_erf = np.vectorize(math.erf)


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


class _Responses:
    """How one clinic's clients answer: SRS marks on a 10 cm line (6 cm + 1.5 cm a latent
    unit, censored at the ends, read to the millimetre), or WAI-SR Likert answers 1-5 from an
    ordered probit with per-item thresholds."""

    def __init__(self, code: str, rng: np.random.Generator, k: int) -> None:
        self.code = code
        self.cuts = np.sort(rng.normal([-1.8, -0.9, 0.1, 1.3], 0.15, (k, 4)), axis=1)

    def observe(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Responses to latent item values y (..., k) that include the item noise."""
        if self.code == "SRS":
            mark = 6.0 + 1.5 * y + rng.normal(0.0, 0.1, y.shape)
            return np.round(np.clip(mark, 0.0, 10.0), 1)
        return 1.0 + (y[..., None] > self.cuts).sum(axis=-1).astype(float)

    def expected(self, y: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Expected responses to latent item values y (..., k) before item noise of SD sd."""
        if self.code == "SRS":
            return np.clip(6.0 + 1.5 * y, 0.0, 10.0)
        z = (y[..., None] - self.cuts) / sd[..., None]
        return 1.0 + _phi(z).sum(axis=-1)


def cohort(code: str, seed: int, noise: float, clinic_id: str) -> tuple[pd.DataFrame, ...]:
    """One clinic: measurements, appointments, truth (pipelines.detect.evaluate's truth format)."""
    rng = np.random.default_rng([seed, 7 if code == "SRS" else 11])
    n, t = N_CLIENTS, 24
    k = 4 if code == "SRS" else 12
    resp = _Responses(code, rng, k)
    latent, innov = _latent(rng, n, t, noise, 2.0 if code == "SRS" else 1.2)
    loading = rng.uniform(0.7, 1.3, (n, k))
    bias = rng.normal(0.0, 0.3, (n, k))
    item_sd = innov * rng.uniform(0.5, 1.0, n)

    def total(items: np.ndarray) -> np.ndarray:
        return items.sum(axis=-1) if code == "SRS" else items.mean(axis=-1)

    def item_latent(shock: np.ndarray) -> np.ndarray:
        return latent[:, :, None] * loading[:, None, :] + bias[:, None, :] - shock

    # each client's own SD of the observed total, measured on a rupture-free twin draw
    twin_rng = np.random.default_rng([seed, 99, k])
    clean = item_latent(np.zeros((n, t, k)))
    twin = total(
        resp.observe(clean + item_sd[:, None, None] * twin_rng.normal(size=clean.shape), twin_rng)
    )
    own_sd = np.maximum(twin.std(axis=1, ddof=1), 0.2 if code == "SRS" else 0.04)
    # at noise x1.0 the rupture is 2-5.6 of the client's SDs; its depth on the latent scale is
    # the same at every noise level (the same ruptures, seen through more or less noise)
    sd_at_1 = own_sd / noise

    sessions = rng.integers(6, 21, n)
    onset = rng.integers(3, np.maximum(sessions, 4))
    has_r = (rng.random(n) < 0.4) & (onset < sessions)
    part_names = ("bond", "goal_task", "overall")
    part = rng.choice(3, n, p=[0.4, 0.35, 0.25])
    size_sd = rng.uniform(2.0, 5.6, n)
    repairs = rng.random(n) < 0.5
    half_life = rng.uniform(0.5, 2.0, n)

    # the latent depth that lowers the client's expected total by size x SD, by bisection
    mask = np.zeros((n, k))
    for p, name in enumerate(part_names):
        mask[np.ix_(part == p, PARTS[code][name])] = 1.0
    base = total(resp.expected(clean, item_sd[:, None, None]))
    lo, hi = np.zeros(n), np.full(n, 12.0)
    for _ in range(30):
        mid = (lo + hi) / 2
        hit = total(
            resp.expected(clean - mid[:, None, None] * mask[:, None, :], item_sd[:, None, None])
        )
        short = (base - hit).mean(axis=1) < size_sd * sd_at_1
        lo = np.where(short, mid, lo)
        hi = np.where(short, hi, mid)
    depth = (lo + hi) / 2
    after = np.arange(1, t + 1)[None, :] - onset[:, None]  # 0 at the onset
    left = np.where(repairs[:, None], 0.5 ** (np.maximum(after, 0) / half_life[:, None]), 1.0)
    left = np.where((after >= 0) & has_r[:, None], left, 0.0)
    shock = (depth[:, None] * left)[:, :, None] * mask[:, None, :]
    # repaired at the first session after the onset with less than one own SD left
    below = (after > 0) & (left * size_sd[:, None] < 1.0) & repairs[:, None]
    repaired_at = np.where(below.any(axis=1), below.argmax(axis=1) + 1, -1)
    y = item_latent(shock) + item_sd[:, None, None] * rng.normal(size=(n, t, k))
    items = resp.observe(y, rng)
    totals = total(items)

    # dropout: a third of unrepaired ruptures end the course 1-2 sessions after the onset
    quits = has_r & (repaired_at < 0) & (rng.random(n) < 0.33)
    end = np.where(quits, np.minimum(sessions, onset + rng.integers(1, 3, n)), sessions)
    repaired_at = np.where(repaired_at > end, -1, repaired_at)

    start = np.datetime64("2025-02-03") + rng.integers(0, 150, n).astype("timedelta64[D]")
    gap = rng.choice([7, 7, 7, 14], (n, t))  # weekly, some fortnightly (a missed week)
    gap[:, 0] = 0
    day = np.cumsum(gap, axis=1)
    rows = []
    appts = []
    clients = [f"IC{seed}{i:04d}" for i in range(n)]
    for i in range(n):
        for j in range(end[i]):
            date = (start[i] + np.timedelta64(int(day[i, j]), "D")).astype(dt.date)
            rec: dict[str, object] = {
                "clinic_id": clinic_id,
                "client_id": clients[i],
                "clinician_id": f"P{i % 17:02d}",
                "session_number": j + 1,
                "session_date": date,
                "instrument": code,
                "instrument_version": "3.0" if code == "SRS" else "1.0",
                "total": round(float(totals[i, j]), 4),
            }
            for q in range(12):
                rec[f"item_{q + 1}"] = float(items[i, j, q]) if q < k else None
            rows.append(rec)
            appts.append((clinic_id, clients[i], rec["clinician_id"], date, "attended"))
            if j > 0 and gap[i, j] == 14:
                missed = date - dt.timedelta(days=7)
                status = "no_show" if rng.random() < 0.5 else "cancelled"
                appts.append((clinic_id, clients[i], rec["clinician_id"], missed, status))
    measures = pd.DataFrame(rows)
    appointments = pd.DataFrame(
        appts, columns=["clinic_id", "client_id", "clinician_id", "appointment_date", "status"]
    )
    truth = [
        {
            "kind": "rupture",
            "clinic_id": clinic_id,
            "client_id": clients[i],
            "instrument": code,
            "onset_session": int(onset[i]),
            "part": part_names[part[i]],
            "repaired_session": int(repaired_at[i]) if repaired_at[i] > 0 else pd.NA,
            "dropout_session": int(end[i]) if quits[i] else pd.NA,
            "last_session": int(end[i]),
        }
        for i in np.flatnonzero(has_r)
    ]
    cutoff, rc = (36.0, 4.3) if code == "SRS" else (3.0, 0.6)
    chronic = np.flatnonzero(np.median(twin, axis=1) < cutoff - rc)
    truth += [
        {
            "kind": "chronic_low",
            "clinic_id": clinic_id,
            "client_id": clients[i],
            "instrument": code,
            "onset_session": pd.NA,
            "part": pd.NA,
            "repaired_session": pd.NA,
            "dropout_session": pd.NA,
            "last_session": int(end[i]),
        }
        for i in chronic
    ]
    tr = pd.DataFrame(truth)
    for col in ("onset_session", "repaired_session", "dropout_session", "last_session"):
        tr[col] = tr[col].astype("Int64")
    stats = {
        "mean_total": float(np.mean(twin)),
        "own_sd_median": float(np.median(own_sd)),
        "share_at_ceiling": float(np.mean(twin >= (40.0 if code == "SRS" else 5.0))),
        "rupture_rate": float(has_r.mean()),
    }
    return measures, appointments, tr, stats


def score_level(noise: float, seeds: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Per method (and the detector under a 0.05 budget): mean and worst clinic-seed figures."""
    from pipelines.warehouse import migrate

    per: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        for code in ("SRS", "WAI-SR"):
            clinic = f"ind_{code.lower().replace('-', '')}_{seed}"
            measures, appointments, truth, _ = cohort(code, seed, noise, clinic)
            for budget in (None, 0.05):
                conn = duckdb.connect(":memory:")
                migrate(conn)
                insert_canonical(conn, measures, appointments, source="independent")
                params = DetectParams(alert_budget=budget)
                detect(conn, params=params)
                sessions = alliance_sessions(conn)
                flagged = flagged_sessions(conn, params)
                conn.close()
                methods = METHODS if budget is None else {"detector": None}
                for method in methods:
                    s = score(flagged[method], truth, sessions)
                    name = method if budget is None else "detector_budget_0.05"
                    per.setdefault(name, []).append(
                        {
                            "recall": s.recall,
                            "precision": s.precision,
                            "f1": s.f1,
                            "burden": s.burden,
                            "code": code,
                        }
                    )
    out: dict[str, dict[str, float]] = {}
    for name, runs in per.items():
        frame = pd.DataFrame(runs)
        out[name] = {
            f"{m}_{agg}": float(getattr(frame[m], agg)())
            for m in ("recall", "precision", "f1", "burden")
            for agg in ("mean", "min", "max")
        }
        for code in ("SRS", "WAI-SR"):
            out[name][f"recall_{code}"] = float(frame[frame["code"] == code]["recall"].mean())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    t = time.perf_counter()
    results = {str(noise): score_level(noise, tuple(args.seeds)) for noise in NOISE_LEVELS}
    lines = [
        "| noise | method | recall mean (worst) | SRS / WAI-SR recall | precision mean (worst) "
        "| F1 mean (worst) | burden mean (highest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for noise, methods in results.items():
        for name, r in methods.items():
            lines.append(
                f"| {noise} | {name} | {r['recall_mean']:.3f} ({r['recall_min']:.3f}) "
                f"| {r['recall_SRS']:.2f} / {r['recall_WAI-SR']:.2f} "
                f"| {r['precision_mean']:.3f} ({r['precision_min']:.3f}) "
                f"| {r['f1_mean']:.3f} ({r['f1_min']:.3f}) "
                f"| {r['burden_mean']:.3f} ({r['burden_max']:.3f}) |"
            )
    table = "\n".join(lines)
    print(table)
    print(f"({time.perf_counter() - t:.0f} s; seeds {args.seeds}, 2 clinics x {N_CLIENTS} clients)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detect_independent.json").write_text(
        json.dumps({"seeds": args.seeds, "levels": results}, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "detect_independent.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
