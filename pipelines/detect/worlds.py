"""Worlds for scoring detection: clinics whose every property can be moved, with ground truth.

The sample clinics of `pipelines.simulate.cohort` are one world. Detection has to hold in clinics it was
never tuned on, so the evaluation grid (`pipelines.evaluate_grid`, docs/detection.md) varies each
dimension the literature gives a plausible range for (DOMAIN.md, "Calibrating detection"):
within-client noise (log-normal across clients, so a clinic mixes stable and noisy clients),
level and ceiling, trend and autocorrelation, course length and missed sessions, clinic size,
rupture prevalence, size (in the client's own within-client SDs), shape, part, onset, repair
and dropout.

The model, per client: a latent alliance total with its own mean, its own within-client SD
(a session-level shock shared by the items plus item noise, AR(1) across sessions) and a linear
trend; items are clipped to the scale (the ceiling) and rounded to its step. At most one
rupture: its deficit (size x the client's own SD, on the observed scale) falls on one part of the
instrument or on all items, with a shape (a one-session dip, a decline over 2-4 sessions or a
sustained drop) and a repair (back to the client's level within 1-2 sessions, or never).
Unrepaired ruptures end in dropout with a given probability. The output has the same form as
`pipelines.simulate.cohort`: canonical measures and appointments, and truth (TRUTH_COLUMNS).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines import registry
from pipelines.canonical import TRUTH_COLUMNS
from pipelines.errors import AllianceWatchError
from pipelines.simulate.cohort import Cohort, score_total

SHAPES: tuple[str, ...] = ("dip", "decline", "sustained")
RUPTURE_PARTS: tuple[str, ...] = ("bond", "goal_task", "all")


class WorldError(AllianceWatchError):
    """A world's parameters are out of range; the message names the parameter."""


@dataclass(frozen=True)
class World:
    """One clinic's world. Totals are on the instrument's total scale (SRS points 0-40, WAI-SR
    mean 1-5); SDs are within-client SDs of the total from session to session."""

    name: str = "central"
    instrument: str = "SRS"
    n_clients: int = 150
    # within-client SD of the total: log-normal across clients (median, SD of its log), clipped
    sd_median: float = 1.2
    sd_log_spread: float = 0.6
    sd_range: tuple[float, float] = (0.3, 3.5)
    # client means of the latent total (normal, clipped); above the scale's top = the ceiling
    level_mean: float = 35.5
    level_sd: float = 2.5
    level_range: tuple[float, float] = (28.0, 41.0)
    trend: tuple[float, float] = (0.0, 0.1)  # per-session slope range of the latent total
    autocorrelation: float = 0.2  # AR(1) of the session shocks
    shock_share: float = 0.6  # share of the within-client variance shared by all items
    sessions: tuple[int, int] = (6, 20)
    miss_rate: float = 0.15
    rupture_rate: float = 0.35
    size: tuple[float, float] = (2.0, 4.0)  # x the client's own SD
    shape_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)  # dip, decline, sustained
    part_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)  # bond, goal_task, all items
    onset_min: int = 3
    onset_max: int | None = None  # None: up to the last session but one
    repair_rate: float = 0.6  # for dips and declines; a sustained drop is never repaired
    repair_lag: tuple[int, int] = (1, 2)  # sessions from the deepest point back to the level
    dropout_after_unrepaired: float = 0.5
    start_date: dt.date = dt.date(2025, 1, 6)
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.instrument not in registry.ALLIANCE_INSTRUMENTS:
            raise WorldError(
                f"instrument must be one of {', '.join(registry.ALLIANCE_INSTRUMENTS)}"
            )
        if self.n_clients < 1 or self.sessions[0] < 2 or self.sessions[1] < self.sessions[0]:
            raise WorldError("n_clients >= 1 and 2 <= sessions[0] <= sessions[1]")
        for name in ("shape_probs", "part_probs"):
            if abs(sum(getattr(self, name)) - 1.0) > 1e-9:
                raise WorldError(f"{name} must sum to 1")
        if not (0 <= self.rupture_rate <= 1 and 0 <= self.miss_rate < 1):
            raise WorldError("rupture_rate in [0, 1] and miss_rate in [0, 1)")
        if self.onset_min < 2:
            raise WorldError("onset_min must be at least 2 (a rupture needs a session before it)")


def _scale(code: str) -> tuple[registry.Instrument, int, float]:
    ins = registry.get(code)
    # items per total point: a sum spreads a total change over its items, a mean does not
    per_item = 1.0 / ins.n_items if ins.scoring == "sum" else 1.0
    return ins, ins.n_items, per_item


def _part_mask(code: str) -> np.ndarray:
    """(3 rupture parts, n_items) 0/1 masks: bond items, goal/task items, every item."""
    ins = registry.get(code)
    m = np.zeros((len(RUPTURE_PARTS), ins.n_items))
    if code == "SRS":
        m[0, 0] = 1.0  # relationship
        m[1, [1, 2]] = 1.0  # goals, approach
    else:
        subs = ins.subscales
        m[0, [i - 1 for i in subs["bond"]]] = 1.0
        m[1, [i - 1 for i in (*subs["goal"], *subs["task"])]] = 1.0
    m[2, :] = 1.0
    return m


def simulate_world(world: World, seed: int, clinic_id: str | None = None) -> Cohort:
    """One clinic of `world`, deterministic by seed: canonical measures, appointments, truth."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _name_seed(world.name)]))
    w = world
    code = w.instrument
    ins, k, per_item = _scale(code)
    clinic = clinic_id or f"w_{w.name}"
    n = w.n_clients
    smax = w.sessions[1]

    planned = rng.integers(w.sessions[0], w.sessions[1] + 1, n)
    sd = np.exp(rng.normal(np.log(w.sd_median), w.sd_log_spread, n))
    sd = np.clip(sd, *w.sd_range)
    level = np.clip(rng.normal(w.level_mean, w.level_sd, n), *w.level_range)
    slope = rng.uniform(w.trend[0], w.trend[1], n)

    # rupture: onset in [onset_min, planned - 1] (one session after it at least)
    onset_hi = np.minimum(planned - 1, w.onset_max if w.onset_max else smax)
    can = onset_hi >= w.onset_min
    has_r = can & (rng.random(n) < w.rupture_rate)
    onset = rng.integers(w.onset_min, np.maximum(onset_hi, w.onset_min) + 1)
    shape = rng.choice(len(SHAPES), size=n, p=list(w.shape_probs))
    part = rng.choice(len(RUPTURE_PARTS), size=n, p=list(w.part_probs))
    size = rng.uniform(w.size[0], w.size[1], n)
    ramp = np.where(shape == 1, rng.integers(2, 5, n), 1)  # sessions to the deepest point
    repaired = has_r & (shape != 2) & (rng.random(n) < w.repair_rate)
    lag = rng.integers(w.repair_lag[0], w.repair_lag[1] + 1, n)
    repair_session = onset + ramp - 1 + lag
    # unrepaired ruptures end in dropout within two sessions of the onset (some of them)
    drop = has_r & ~repaired & (rng.random(n) < w.dropout_after_unrepaired)
    drop_end = onset + ramp - 1 + rng.integers(0, 3, n)
    end = np.where(drop & (drop_end < planned), drop_end, planned)
    dropout = end < planned
    repaired &= repair_session <= end

    # latent totals: AR(1) session shocks shared by the items, plus item noise
    sess = np.arange(1, smax + 1)
    rho = w.autocorrelation
    shock_sd = np.sqrt(w.shock_share) * sd  # on the total scale
    # item noise whose sum (SRS) or mean (WAI-SR) has variance (1 - shock_share) * sd^2, less
    # what rounding the items to the scale's step adds (step^2 / 12 an item), so that `sd` is
    # the within-client SD of the observed total (WAI-SR items are whole numbers)
    spread = k if ins.scoring == "mean" else 1.0 / k
    rounding_var = ins.item_step**2 / 12 / spread  # of the total
    noise_var = np.maximum(
        (1 - w.shock_share) * sd**2 - rounding_var, 0.1 * (1 - w.shock_share) * sd**2
    )
    item_sd = np.sqrt(noise_var * spread)
    eps = rng.normal(0.0, 1.0, (n, smax))
    shocks = np.empty((n, smax))
    shocks[:, 0] = eps[:, 0]
    for j in range(1, smax):
        shocks[:, j] = rho * shocks[:, j - 1] + np.sqrt(1 - rho**2) * eps[:, j]
    latent = level[:, None] + slope[:, None] * (sess[None, :] - 1) + shock_sd[:, None] * shocks
    # per-item latent: the total's per-item share, a stable item profile, item noise
    per_item_level = latent * per_item if ins.scoring == "sum" else latent
    profile = rng.normal(0.0, 0.15 * (ins.item_max - ins.item_min) / 10, (n, k))
    profile -= profile.mean(axis=1, keepdims=True)
    items = (
        per_item_level[:, :, None]
        + profile[:, None, :]
        + item_sd[:, None, None] * rng.normal(0.0, 1.0, (n, smax, k))
    )
    items = np.clip(items, ins.item_min, ins.item_max)

    # the rupture's deficit on the observed scale, spread over the fallen part's items
    rel = sess[None, :] - onset[:, None]  # 0 at the onset
    depth = np.clip((rel + 1) / ramp[:, None], 0.0, 1.0)
    deepest = (onset + ramp - 1)[:, None]
    after = sess[None, :] - deepest
    recover = np.where(repaired[:, None], np.clip(1.0 - after / lag[:, None], 0.0, 1.0), 1.0)
    profile_r = np.where(rel >= 0, np.where(after > 0, recover, depth), 0.0)
    profile_r = np.where(has_r[:, None], profile_r, 0.0)
    mask = _part_mask(code)[part]  # (n, k)
    total_deficit = size * sd  # on the total scale
    # each fallen item falls alike; the total (a sum, or a mean) falls by total_deficit
    items_per_point = 1.0 if ins.scoring == "sum" else float(k)
    per_item_deficit = (
        total_deficit[:, None] * items_per_point / mask.sum(axis=1, keepdims=True) * mask
    )
    items = items - profile_r[:, :, None] * per_item_deficit[:, None, :]
    items = np.clip(items, ins.item_min, ins.item_max)
    items = np.round(items, 1) if ins.item_step < 1 else np.rint(items)

    # weekly slots; missed slots (cancellations, no-shows) push sessions on
    misses = (rng.random((n, smax)) < w.miss_rate).astype(np.int64)
    misses[:, 0] = 0
    slot = (sess[None, :] - 1) + np.cumsum(misses, axis=1)
    attended = sess[None, :] <= end[:, None]
    start = np.datetime64(w.start_date, "D") + rng.integers(0, 120, n).astype("timedelta64[D]")

    width = max(4, len(str(n)))
    client_ids = np.array([f"C{i + 1:0{width}d}" for i in range(n)], dtype=object)
    n_clin = max(2, int(np.ceil(n / 15)))
    clinician = np.array([f"T{i + 1:02d}" for i in range(n_clin)], dtype=object)[
        rng.integers(0, n_clin, n)
    ]
    ci, si = np.nonzero(attended)
    dates = start[ci] + (slot[ci, si] * 7).astype("timedelta64[D]")
    row_items = items[ci, si, :]
    measures = pd.DataFrame(
        {
            "clinic_id": clinic,
            "client_id": client_ids[ci],
            "clinician_id": clinician[ci],
            "session_date": pd.to_datetime(dates).date,
            "session_number": (si + 1).astype("int32"),
            "instrument": code,
            "instrument_version": ins.default_version,
        }
    )
    for j, col in enumerate(registry.ITEM_COLUMNS):
        measures[col] = row_items[:, j] if j < k else np.nan
    measures["total"] = score_total(row_items, code)

    # appointments: the attended sessions and the missed slots before them
    mi, mj = np.nonzero((misses > 0) & attended)
    appts = pd.concat(
        [
            pd.DataFrame({"c": ci, "slot": slot[ci, si], "status": "attended"}),
            pd.DataFrame(
                {
                    "c": mi,
                    "slot": slot[mi, mj] - 1,
                    "status": np.where(rng.random(len(mi)) < 0.5, "cancelled", "no_show"),
                }
            ),
        ],
        ignore_index=True,
    )
    appointments = pd.DataFrame(
        {
            "clinic_id": clinic,
            "client_id": client_ids[appts["c"].to_numpy()],
            "clinician_id": clinician[appts["c"].to_numpy()],
            "appointment_date": pd.to_datetime(
                start[appts["c"].to_numpy()]
                + (appts["slot"].to_numpy() * 7).astype("timedelta64[D]")
            ).date,
            "status": appts["status"].to_numpy(),
        }
    )

    n_sess = end
    truth_rows = []
    # chronically low: a level below the cutoff by a reliable change (their flags are left out
    # of precision, as in pipelines.detect.evaluate)
    chronic = level < ins.cutoff - ins.reliable_change
    for i in np.flatnonzero(has_r):
        truth_rows.append(
            {
                "kind": "rupture",
                "client_id": client_ids[i],
                "onset_session": int(onset[i]),
                "part": RUPTURE_PARTS[part[i]] if RUPTURE_PARTS[part[i]] != "all" else "overall",
                "repaired_session": int(repair_session[i]) if repaired[i] else pd.NA,
                "dropout_session": int(n_sess[i]) if dropout[i] else pd.NA,
                "last_session": int(n_sess[i]),
                "shape": SHAPES[shape[i]],
                "size_sd": float(size[i]),
                "client_sd": float(sd[i]),
            }
        )
    for i in np.flatnonzero(chronic):
        truth_rows.append(
            {
                "kind": "chronic_low",
                "client_id": client_ids[i],
                "dropout_session": int(n_sess[i]) if dropout[i] else pd.NA,
                "last_session": int(n_sess[i]),
            }
        )
    for i in np.flatnonzero(dropout):
        truth_rows.append(
            {
                "kind": "dropout",
                "client_id": client_ids[i],
                "dropout_session": int(n_sess[i]),
                "last_session": int(n_sess[i]),
            }
        )
    extra = ["shape", "size_sd", "client_sd"]
    truth = pd.DataFrame(truth_rows, columns=[*TRUTH_COLUMNS, *extra])
    truth["clinic_id"] = clinic
    truth["instrument"] = code
    for col in ("onset_session", "repaired_session", "dropout_session", "last_session"):
        truth[col] = truth[col].astype("Int64")
    truth["part"] = truth["part"].astype(object)
    return Cohort(measures, appointments, truth)


def _name_seed(name: str) -> int:
    """A stable integer from a world's name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
