"""A realistic synthetic cohort with ground truth, deterministic by seed (`alliance-watch generate`).

Every number below is a simulator parameter documented, with its source, in docs/simulator.md.
Instrument facts (items, ranges, scoring, reliable change) come from `pipelines.registry` only.

The model, per client: a latent alliance propensity (between-client normal, plus a chronically
low subgroup) with linear growth, within-client noise (a session-level shock shared by the items
plus item noise), occasional off days, at most one rupture (a part of the instrument falls by a
mix of sizes around the reliable-change value; repaired as a V, or an unrepaired decline), dropout
(more likely with low alliance and after unrepaired ruptures), missed appointments (more after a
rupture) and symptom trajectories whose improvement depends on the alliance, so that early
alliance correlates with pre-post change at about the published r ~ .28.

All generation is vectorized over clients and sessions (numpy); there is no per-row loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import registry
from pipelines.canonical import TRUTH_COLUMNS
from pipelines.errors import AllianceWatchError

CANONICAL_MEASURE_COLUMNS: tuple[str, ...] = (
    "clinic_id",
    "client_id",
    "clinician_id",
    "session_date",
    "session_number",
    "instrument",
    "instrument_version",
    *registry.ITEM_COLUMNS,
    "total",
)


CANONICAL_APPOINTMENT_COLUMNS: tuple[str, ...] = (
    "clinic_id",
    "client_id",
    "clinician_id",
    "appointment_date",
    "status",
)


PARTS: tuple[str, ...] = ("bond", "goal_task", "overall")


MISSED_STATUSES: tuple[str, ...] = ("cancelled", "no_show", "cancelled_by_clinic")


class SimulationError(AllianceWatchError):
    """Bad simulator options; the message says which option and what would fix it."""


@dataclass(frozen=True)
class SimParams:
    """Simulator parameters (docs/simulator.md gives each one's source)."""

    n_clients: int = 80
    sessions_min: int = 6
    sessions_max: int = 20
    start_date: dt.date = dt.date(2025, 1, 1)
    end_date: dt.date = dt.date(2025, 7, 1)
    noise: float = 1.0  # multiplier of within-client noise
    rupture_rate: float = 0.20
    repair_rate: float = 0.60
    rupture_size_min: float = 1.0  # x reliable change of the total
    rupture_size_max: float = 2.2
    part_probs: tuple[float, float, float] = (0.4, 0.4, 0.2)  # bond, goal_task, overall
    chronic_low_rate: float = 0.06
    off_day_rate: float = 0.04
    growth_mean: float = 0.04  # alliance propensity units per session
    growth_sd: float = 0.03
    base_dropout: float = 0.17
    dropout_alliance_logodds: float = 0.8  # per SD of alliance propensity (Sharf et al. 2010)
    dropout_after_unrepaired: float = 0.55
    miss_rate: float = 0.15  # cancelled + no-show + cancelled_by_clinic per scheduled slot
    miss_rate_rupture: float = 0.35
    withdrawal_no_show: float = 0.7  # a dropout's last scheduled slot is a no-show
    symptom_skip_rate: float = 0.03
    improvement_mean: float = 1.0  # pre-post, in intake SDs
    improvement_sd: float = 0.55
    improvement_alliance: float = 0.24  # per SD of alliance propensity
    improvement_repaired: float = 0.15
    improvement_unrepaired: float = -0.35
    clients_per_clinician: int = 15


@dataclass(frozen=True)
class ClinicSpec:
    """One simulated clinic: its id, instruments and the export style it delivers."""

    clinic_id: str
    style: str  # exporters.STYLES key
    alliance: str
    symptoms: tuple[str, ...]
    timezone: str
    versions: dict[str, str] = field(default_factory=dict)

    def version(self, code: str) -> str:
        return self.versions.get(code, registry.INSTRUMENTS[code].default_version)


SAMPLE_CLINICS: tuple[ClinicSpec, ...] = (
    ClinicSpec("pcoms_north", "pcoms_wide", "SRS", ("ORS",), "America/Chicago"),
    ClinicSpec("wai_central", "parquet_long", "WAI-SR", ("PHQ-9", "GAD-7"), "America/New_York"),
    ClinicSpec("euro_praxis", "euro_csv", "SRS", ("ORS",), "Europe/Berlin"),
    ClinicSpec("ref_clinic", "reference", "SRS", ("PHQ-9",), "America/Denver"),
)


def default_clinics(n: int = len(SAMPLE_CLINICS)) -> list[ClinicSpec]:
    """The sample clinics; more than four cycle the formats with numbered ids."""
    if n < 1:
        raise SimulationError("--clinics must be at least 1")
    out: list[ClinicSpec] = []
    for i in range(n):
        base = SAMPLE_CLINICS[i % len(SAMPLE_CLINICS)]
        cycle = i // len(SAMPLE_CLINICS)
        out.append(base if cycle == 0 else replace(base, clinic_id=f"{base.clinic_id}_{cycle + 1}"))
    return out


@dataclass
class Cohort:
    """Canonical rows and ground truth (columns: CANONICAL_*_COLUMNS, TRUTH_COLUMNS)."""

    measures: pd.DataFrame
    appointments: pd.DataFrame
    truth: pd.DataFrame


# Intake norms of the symptom measures in routine outpatient care (docs/simulator.md).
SYMPTOM_INTAKE: dict[str, tuple[float, float]] = {
    "ORS": (19.6, 8.0),
    "PHQ-9": (15.0, 5.5),
    "GAD-7": (13.0, 5.0),
}


# Latent alliance -> item scale: per-item mean and per-SD slope, item and session noise.
ALLIANCE_ITEM_MODEL: dict[str, tuple[float, float, float, float, float]] = {
    # mean, slope per SD of propensity, stable item offset SD, item noise SD, session noise SD
    "SRS": (9.2, 0.6, 0.25, 0.30, 0.30),
    "WAI-SR": (3.9, 0.5, 0.30, 0.45, 0.20),
}


CHRONIC_LOW_PROPENSITY = (-3.0, 0.4)  # mean, SD; SRS total ~29-30, WAI-SR mean ~2.4


def _part_weights(code: str) -> np.ndarray:
    """(3 parts, n_items) weights of how much each item falls in a rupture of that part."""
    ins = registry.get(code)
    w = np.zeros((len(PARTS), ins.n_items))
    if code == "SRS":
        # item 1 relationship = bond; items 2 goals, 3 approach = goal/task; 4 overall: half of each
        w[0, [0, 3]] = (1.0, 0.5)
        w[1, [1, 2, 3]] = (1.0, 1.0, 0.5)
    else:
        subs = ins.subscales
        w[0, [i - 1 for i in subs["bond"]]] = 1.0
        w[1, [i - 1 for i in (*subs["goal"], *subs["task"])]] = 1.0
    w[2, :] = 1.0
    return w


def _round_to_step(x: np.ndarray, code: str) -> np.ndarray:
    ins = registry.get(code)
    return np.round(x, 1) if ins.item_step < 1 else np.rint(x)


def score_total(items: np.ndarray, code: str) -> np.ndarray:
    """Registry scoring of complete item rows: sum to one decimal, WAI-SR mean to 2 decimals.

    Items are added one column at a time (left to right) and then rounded, so the result is the
    nearest double to the exact decimal total, as any reader computing the same rule gets.
    """
    ins = registry.get(code)
    s = items[:, 0].copy()
    for j in range(1, items.shape[1]):
        s = s + items[:, j]
    if ins.scoring == "mean":
        return np.round(s / ins.n_items, 2)
    return np.round(s, 1)


@dataclass
class _Clients:
    n_sess: np.ndarray  # attended sessions (after dropout and the end date)
    start: np.ndarray  # datetime64[D] of the first slot
    slot: np.ndarray  # (n, S) slot index of each session (weeks after start), -1 beyond n_sess
    propensity: np.ndarray
    growth: np.ndarray
    chronic: np.ndarray
    has_rupture: np.ndarray
    onset: np.ndarray  # 1-based session
    part: np.ndarray  # index into PARTS
    size: np.ndarray  # x reliable change
    repaired: np.ndarray
    lag: np.ndarray  # sessions from onset to repair
    dropout: np.ndarray
    clinician: np.ndarray


def _simulate_clients(p: SimParams, rng: np.random.Generator) -> tuple[_Clients, pd.DataFrame]:
    n, smax = p.n_clients, p.sessions_max
    planned = rng.integers(p.sessions_min, p.sessions_max + 1, n)
    chronic = rng.random(n) < p.chronic_low_rate
    prop = np.clip(rng.normal(0.0, 1.0, n), -1.8, None)
    prop[chronic] = rng.normal(*CHRONIC_LOW_PROPENSITY, int(chronic.sum()))
    growth = rng.normal(p.growth_mean, p.growth_sd, n)

    # Rupture: at most one, with at least two sessions before it and one after.
    has_r = (rng.random(n) < p.rupture_rate) & (planned >= 4)
    onset = rng.integers(3, np.maximum(planned, 4))  # 3 .. planned-1
    part = rng.choice(len(PARTS), size=n, p=list(p.part_probs))
    size = rng.uniform(p.rupture_size_min, p.rupture_size_max, n)
    repaired = has_r & (rng.random(n) < p.repair_rate)
    lag = rng.integers(1, 4, n)

    # Dropout: baseline hazard rises with low alliance; unrepaired ruptures add a high risk.
    logit = np.log(p.base_dropout / (1 - p.base_dropout)) - p.dropout_alliance_logodds * prop
    base_drop = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    base_end = rng.integers(2, np.maximum(planned, 3))  # 2 .. planned-1
    end = np.where(base_drop, np.minimum(base_end, planned), planned)
    unrep = has_r & ~repaired
    r_drop = unrep & (rng.random(n) < p.dropout_after_unrepaired)
    r_end = onset + rng.integers(0, 3, n)
    r_drop &= r_end < planned
    end = np.where(r_drop, np.minimum(end, r_end), end)
    has_r &= onset <= end
    repaired &= has_r & (onset + lag <= end)
    dropout = end < planned

    # Scheduled weekly slots: missed slots (more during an unrepaired rupture) push sessions on.
    sess = np.arange(1, smax + 1)[None, :]
    in_rupture = (
        has_r[:, None]
        & (sess >= onset[:, None])
        & ~(repaired[:, None] & (sess >= (onset + lag)[:, None]))
    )
    p_miss = np.where(in_rupture, p.miss_rate_rupture, p.miss_rate)
    misses = (rng.random((n, smax)) < p_miss).astype(np.int64)
    misses += (rng.random((n, smax)) < p_miss * p.miss_rate).astype(np.int64)  # a second one
    misses[:, 0] = 0  # misses before session s (session 1 starts the course)
    attended = sess <= end[:, None]
    slot = np.where(attended, (sess - 1) + np.cumsum(misses * attended, axis=1), -1)

    # First slot on a weekday, so that the course fits the window about as often as in a clinic.
    window = (p.end_date - p.start_date).days
    offset = rng.integers(0, max(window - 6, 1), n)
    start = np.datetime64(p.start_date, "D") + offset.astype("timedelta64[D]")
    start = np.busday_offset(start, 0, roll="forward")
    end_d = np.datetime64(p.end_date, "D")
    in_window = attended & (start[:, None] + (slot * 7).astype("timedelta64[D]") <= end_d)
    n_sess = in_window.sum(axis=1)
    slot = np.where(in_window, slot, -1)
    truncated = n_sess < end
    dropout &= ~truncated
    has_r &= onset <= n_sess
    repaired &= has_r & (onset + lag <= n_sess)

    n_clin = max(2, int(np.ceil(n / p.clients_per_clinician)))
    clinician = rng.integers(0, n_clin, n)

    # Appointments: attended slots, missed slots between sessions, a dropout's final no-show.
    ci, si = np.nonzero(slot >= 0)
    rows_c = [ci]
    rows_slot = [slot[ci, si]]
    rows_status = [np.zeros(len(ci), dtype=np.int64)]  # 0 = attended
    mi, mj = np.nonzero((misses > 0) & (slot >= 0))
    rep = misses[mi, mj]
    mc = np.repeat(mi, rep)
    # missed slots sit right before the session they delayed
    within = _within_group_index(rep)
    ms = np.repeat(slot[mi, mj], rep) - np.repeat(rep, rep) + within
    rup_miss = np.repeat(in_rupture[mi, mj], rep)
    probs_norm = np.array([0.50, 0.35, 0.15])
    probs_rup = np.array([0.40, 0.55, 0.05])
    u = rng.random(len(mc))
    cum_n, cum_r = np.cumsum(probs_norm), np.cumsum(probs_rup)
    status = np.where(
        rup_miss, np.searchsorted(cum_r, u, side="right"), np.searchsorted(cum_n, u, side="right")
    )
    rows_c.append(mc)
    rows_slot.append(ms)
    rows_status.append(status + 1)
    last_slot = np.max(np.where(slot >= 0, slot, -1), axis=1)
    wd = dropout & (rng.random(n) < p.withdrawal_no_show) & (n_sess > 0)
    rows_c.append(np.flatnonzero(wd))
    rows_slot.append(last_slot[wd] + 1)
    rows_status.append(np.full(int(wd.sum()), 2))
    ac = np.concatenate(rows_c)
    aslot = np.concatenate(rows_slot)
    astatus = np.concatenate(rows_status)
    adate = start[ac] + (aslot * 7).astype("timedelta64[D]")
    keep = adate <= end_d
    appts = pd.DataFrame(
        {
            "client": ac[keep],
            "date": adate[keep],
            "status": np.array(("attended", *MISSED_STATUSES), dtype=object)[astatus[keep]],
        }
    )
    clients = _Clients(
        n_sess=n_sess,
        start=start,
        slot=slot,
        propensity=prop,
        growth=growth,
        chronic=chronic,
        has_rupture=has_r,
        onset=onset,
        part=part,
        size=size,
        repaired=repaired,
        lag=lag,
        dropout=dropout,
        clinician=clinician,
    )
    return clients, appts


def _within_group_index(counts: np.ndarray) -> np.ndarray:
    """For groups of the given sizes laid end to end: 0, 1, ... within each group."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def _alliance_items(
    code: str, c: _Clients, ci: np.ndarray, si: np.ndarray, p: SimParams, rng: np.random.Generator
) -> np.ndarray:
    ins = registry.get(code)
    mean, slope, off_sd, item_sd, sess_sd = ALLIANCE_ITEM_MODEL[code]
    k, n = ins.n_items, len(c.n_sess)
    offsets = rng.normal(0.0, off_sd, (n, k))
    offsets -= offsets.mean(axis=1, keepdims=True)  # item profile; the level is the propensity
    level = c.propensity[ci] + c.growth[ci] * si
    off_day = (rng.random(len(ci)) < p.off_day_rate) * rng.uniform(1.0, 2.0, len(ci))
    x = (
        mean
        + slope * (level - off_day)[:, None]
        + offsets[ci]
        + p.noise * sess_sd * rng.normal(0.0, 1.0, (len(ci), 1))
        + p.noise * item_sd * rng.normal(0.0, 1.0, (len(ci), k))
    )
    x = np.clip(x, ins.item_min, ins.item_max)
    # Rupture deficit on the observed (ceiling-clipped) scale: a V back to zero at the repair
    # session, or a decline that keeps deepening.
    rel = (si + 1) - c.onset[ci]
    lag = c.lag[ci].astype(float)
    shape = np.where(
        c.repaired[ci], np.clip(1.0 - rel / lag, 0.0, None), 1.0 + 0.15 * np.maximum(rel, 0)
    )
    shape = np.where(c.has_rupture[ci] & (rel >= 0), shape, 0.0)
    w = _part_weights(code)[c.part[ci]]
    per_total = c.size[ci] * ins.reliable_change * (ins.n_items if ins.scoring == "mean" else 1)
    deficit = (shape * per_total)[:, None] * w / w.sum(axis=1, keepdims=True)
    x = np.clip(x - deficit, ins.item_min, ins.item_max)
    return _round_to_step(x, code)


def _symptom_items(
    codes: tuple[str, ...],
    c: _Clients,
    ci: np.ndarray,
    si: np.ndarray,
    p: SimParams,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n = len(c.n_sess)
    severity0 = rng.normal(0.0, 1.0, n)
    unrep = c.has_rupture & ~c.repaired
    improvement = (
        p.improvement_mean
        + p.improvement_alliance * c.propensity
        + p.improvement_repaired * c.repaired
        + p.improvement_unrepaired * unrep
        + rng.normal(0.0, p.improvement_sd, n)
    )
    # Dose-effect: most change early (Howard et al. 1986), ~90 % of it by session 10.
    frac = 1.0 - np.exp(-si / 4.0)
    out: dict[str, np.ndarray] = {}
    for code in codes:
        ins = registry.get(code)
        mean, sd = SYMPTOM_INTAKE[code]
        specific = rng.normal(0.0, 0.4, n)  # instrument-specific part of the client's severity
        sev = (
            severity0[ci]
            + specific[ci]
            - improvement[ci] * frac
            + p.noise * 0.35 * rng.normal(0.0, 1.0, len(ci))
        )
        sign = -1.0 if ins.direction == "higher_better" else 1.0
        total = mean + sign * sd * sev
        x = total[:, None] / ins.n_items + p.noise * 0.35 * ins.item_max / 3 * rng.normal(
            0.0, 1.0, (len(ci), ins.n_items)
        )
        out[code] = _round_to_step(np.clip(x, ins.item_min, ins.item_max), code)
    return out


def simulate_clinic(spec: ClinicSpec, p: SimParams, rng: np.random.Generator) -> Cohort:
    """One clinic's canonical measures, appointments and truth (ids C0001.., T01..)."""
    c, appts = _simulate_clients(p, rng)
    n = len(c.n_sess)
    width = max(4, len(str(n)))
    client_ids = np.array([f"C{i + 1:0{width}d}" for i in range(n)], dtype=object)
    n_clin = int(c.clinician.max()) + 1 if n else 1
    clin_ids = np.array([f"T{i + 1:02d}" for i in range(n_clin)], dtype=object)

    ci, si = np.nonzero(c.slot >= 0)  # row-major: by client, then session
    dates = c.start[ci] + (c.slot[ci, si] * 7).astype("timedelta64[D]")
    frames: list[pd.DataFrame] = []
    items_by_code = {spec.alliance: _alliance_items(spec.alliance, c, ci, si, p, rng)}
    items_by_code.update(_symptom_items(spec.symptoms, c, ci, si, p, rng))
    for code, items in items_by_code.items():
        ins = registry.get(code)
        keep = np.ones(len(ci), dtype=bool)
        if code != spec.alliance:
            keep = rng.random(len(ci)) >= p.symptom_skip_rate
            keep[si == 0] = True  # intake is always measured
        df = pd.DataFrame(
            {
                "clinic_id": spec.clinic_id,
                "client_id": client_ids[ci[keep]],
                "clinician_id": clin_ids[c.clinician[ci[keep]]],
                "session_date": dates[keep],
                "session_number": (si[keep] + 1).astype("int32"),
                "instrument": code,
                "instrument_version": spec.version(code),
            }
        )
        for j, col in enumerate(registry.ITEM_COLUMNS):
            df[col] = items[keep, j] if j < ins.n_items else np.nan
        df["total"] = score_total(items[keep], code)
        frames.append(df)
    measures = (
        pd.concat(frames, ignore_index=True)
        .sort_values(["session_date", "client_id", "instrument"], kind="stable")
        .reset_index(drop=True)
    )
    measures["session_date"] = measures["session_date"].astype("datetime64[s]").dt.date

    appointments = pd.DataFrame(
        {
            "clinic_id": spec.clinic_id,
            "client_id": client_ids[appts["client"].to_numpy()],
            "clinician_id": clin_ids[c.clinician[appts["client"].to_numpy()]],
            "appointment_date": appts["date"].to_numpy(),
            "status": appts["status"].to_numpy(),
        }
    ).sort_values(["appointment_date", "client_id"], kind="stable", ignore_index=True)
    appointments["appointment_date"] = (
        appointments["appointment_date"].astype("datetime64[s]").dt.date
    )
    return Cohort(measures, appointments, _truth(spec, c, client_ids))


def _truth(spec: ClinicSpec, c: _Clients, client_ids: np.ndarray) -> pd.DataFrame:
    def blank(mask: np.ndarray, values: np.ndarray) -> pd.Series:
        return pd.Series(np.where(mask, values, 0), dtype="Int64").where(mask, pd.NA)

    exists = c.n_sess > 0
    r = c.has_rupture & exists
    parts = np.array(PARTS, dtype=object)
    rupt = pd.DataFrame(
        {
            "kind": "rupture",
            "client_id": client_ids[r],
            "instrument": spec.alliance,
            "onset_session": blank(np.ones(r.sum(), bool), c.onset[r]),
            "part": parts[c.part[r]],
            "repaired_session": blank(c.repaired[r], (c.onset + c.lag)[r]),
            "dropout_session": blank(c.dropout[r], c.n_sess[r]),
            "last_session": c.n_sess[r],
        }
    )
    chron = c.chronic & exists
    low = pd.DataFrame(
        {
            "kind": "chronic_low",
            "client_id": client_ids[chron],
            "instrument": spec.alliance,
            "dropout_session": blank(c.dropout[chron], c.n_sess[chron]),
            "last_session": c.n_sess[chron],
        }
    )
    d = c.dropout & exists
    drop = pd.DataFrame(
        {
            "kind": "dropout",
            "client_id": client_ids[d],
            "instrument": spec.alliance,
            "dropout_session": blank(np.ones(d.sum(), bool), c.n_sess[d]),
            "last_session": c.n_sess[d],
        }
    )
    out = pd.concat([rupt, low, drop], ignore_index=True)
    out["clinic_id"] = spec.clinic_id
    for col in ("onset_session", "repaired_session", "dropout_session", "last_session"):
        out[col] = out[col].astype("Int64")
    out["part"] = out["part"].astype(object)
    return out.reindex(columns=list(TRUTH_COLUMNS))


def simulate(specs: list[ClinicSpec], params: SimParams, seed: int) -> dict[str, Cohort]:
    """Every clinic's cohort; clinic i draws from its own stream, so adding clinics keeps the
    earlier ones unchanged."""
    out: dict[str, Cohort] = {}
    for i, spec in enumerate(specs):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        out[spec.clinic_id] = simulate_clinic(spec, params, rng)
    return out


def measures_table(cohorts: dict[str, Cohort]) -> pa.Table:
    """All clinics' canonical measures as Arrow (MEASURES_SCHEMA minus source_file/line)."""
    from pipelines.canonical import MEASURES_SCHEMA

    schema = pa.schema([MEASURES_SCHEMA.field(n) for n in CANONICAL_MEASURE_COLUMNS])
    df = pd.concat([c.measures for c in cohorts.values()], ignore_index=True)
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def appointments_table(cohorts: dict[str, Cohort]) -> pa.Table:
    from pipelines.canonical import APPOINTMENTS_SCHEMA

    schema = pa.schema([APPOINTMENTS_SCHEMA.field(n) for n in CANONICAL_APPOINTMENT_COLUMNS])
    df = pd.concat([c.appointments for c in cohorts.values()], ignore_index=True)
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)
