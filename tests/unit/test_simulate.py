"""The simulator: deterministic, realistic per DOMAIN.md, truth consistent with the rows."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import registry
from pipelines.cli import generate as generate_cli
from pipelines.simulate import cohort as simulate
from pipelines.simulate.cohort import SimParams, default_clinics

AS_OF = dt.date(2025, 11, 20)
PARAMS = SimParams(start_date=dt.date(2025, 5, 22), end_date=AS_OF)


@pytest.fixture(scope="module")
def cohorts() -> dict[str, simulate.Cohort]:
    return simulate.simulate(default_clinics(), PARAMS, seed=11)


def _generate(out: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(out), "--seed", "3", "--as-of", AS_OF.isoformat(), *extra]
    )
    return generate_cli.run(args)


def test_same_seed_same_files_other_seed_other_rows(tmp_path: Path) -> None:
    assert _generate(tmp_path / "a") == 0
    assert _generate(tmp_path / "b") == 0
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix != ".parquet":  # parquet embeds writer metadata; compare the CSVs/YAML
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    other = simulate.simulate(default_clinics(1), PARAMS, seed=4)["pcoms_north"].measures
    same = simulate.simulate(default_clinics(1), PARAMS, seed=3)["pcoms_north"].measures
    assert not other.equals(same)


def test_generate_writes_the_documented_layout(tmp_path: Path) -> None:
    assert _generate(tmp_path, "--clients", "30") == 0
    ids = {"pcoms_north", "wai_central", "euro_praxis", "ref_clinic"}
    assert {p.stem for p in (tmp_path / "config" / "clinics").glob("*.yaml")} == ids
    for cid in ids:
        assert len(list((tmp_path / "landing" / cid).iterdir())) >= 4  # several months each
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert list(truth.columns) == list(simulate.TRUTH_COLUMNS)
    assert set(truth["kind"]) <= {"rupture", "chronic_low", "dropout"}
    assert (tmp_path / "canonical" / "measures.parquet").is_file()
    assert (tmp_path / "canonical" / "appointments.parquet").is_file()


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(simulate.SimulationError, match="--end-date"):
        _generate(tmp_path, "--end-date", "2026-01-01")
    with pytest.raises(simulate.SimulationError, match="--rupture-rate"):
        _generate(tmp_path, "--rupture-rate", "1.5")


def test_scores_follow_the_registry(cohorts: dict[str, simulate.Cohort]) -> None:
    for cohort in cohorts.values():
        m = cohort.measures
        for code, rows in m.groupby("instrument"):
            ins = registry.get(str(code))
            items = rows[list(ins.item_columns)].to_numpy()
            assert not np.isnan(items).any()
            assert items.min() >= ins.item_min and items.max() <= ins.item_max
            steps = items / ins.item_step
            assert np.allclose(steps, np.round(steps))  # SRS/ORS one decimal, others integers
            assert rows[list(registry.ITEM_COLUMNS[ins.n_items :])].isna().all().all()
            expected = items.sum(axis=1) if ins.scoring == "sum" else items.mean(axis=1)
            assert np.allclose(rows["total"], expected, atol=ins.total_tolerance)
        assert m.duplicated(["client_id", "session_number", "instrument"]).sum() == 0


def test_ids_are_synthetic_codes_and_dates_in_window(cohorts: dict[str, simulate.Cohort]) -> None:
    for cohort in cohorts.values():
        m, a = cohort.measures, cohort.appointments
        assert m["client_id"].str.fullmatch(r"C\d{4,}").all()
        assert m["clinician_id"].str.fullmatch(r"T\d{2,}").all()
        for dates in (m["session_date"], a["appointment_date"]):
            assert dates.min() >= PARAMS.start_date and dates.max() <= AS_OF
        # sessions are numbered 1..n without gaps, in date order
        for _, s in m.drop_duplicates(["client_id", "session_number"]).groupby("client_id"):
            s = s.sort_values("session_number")
            assert list(s["session_number"]) == list(range(1, len(s) + 1))
            assert s["session_date"].is_monotonic_increasing


def test_srs_has_ceiling_effects(cohorts: dict[str, simulate.Cohort]) -> None:
    srs = cohorts["pcoms_north"].measures.query("instrument == 'SRS'")["total"]
    assert (srs >= 38).mean() > 0.2
    assert 34 <= srs.mean() <= 38


def test_ruptures_are_visible_and_large(cohorts: dict[str, simulate.Cohort]) -> None:
    """The fallen items drop by about the reliable change or more from the client's baseline."""
    drops: list[float] = []
    for cid, cohort in cohorts.items():
        spec = next(s for s in default_clinics() if s.clinic_id == cid)
        ins = registry.get(spec.alliance)
        al = cohort.measures.query("instrument == @spec.alliance").set_index(
            ["client_id", "session_number"]
        )["total"]
        r = cohort.truth.query("kind == 'rupture'")
        for row in r.itertuples():  # a handful of truth rows, not data rows
            before = al.loc[row.client_id].loc[: row.onset_session - 1].mean()
            drops.append(
                (before - al.loc[(row.client_id, row.onset_session)]) / ins.reliable_change
            )
    drops_arr = np.array(drops)
    assert len(drops_arr) >= 20
    assert np.median(drops_arr) >= 0.8
    assert drops_arr.min() < drops_arr.max() - 0.5  # a mix of sizes


def test_truth_is_consistent_with_the_rows(cohorts: dict[str, simulate.Cohort]) -> None:
    for cohort in cohorts.values():
        last = cohort.measures.groupby("client_id")["session_number"].max()
        t = cohort.truth
        assert (t["last_session"].to_numpy() == last.loc[t["client_id"]].to_numpy()).all()
        r = t[t["kind"] == "rupture"]
        assert (r["onset_session"] >= 3).all() and (r["onset_session"] <= r["last_session"]).all()
        rep = r.dropna(subset=["repaired_session"])
        assert (rep["repaired_session"] > rep["onset_session"]).all()
        assert (rep["repaired_session"] <= rep["last_session"]).all()
        assert set(r["part"]) <= {"bond", "goal_task", "overall"}
        d = t[t["kind"] == "dropout"]
        assert (d["dropout_session"] == d["last_session"]).all()


def test_unrepaired_ruptures_drop_out_more_and_miss_more() -> None:
    big = simulate.simulate(default_clinics(4), SimParams(n_clients=600), seed=5)
    truth = pd.concat([c.truth for c in big.values()])
    r = truth[truth["kind"] == "rupture"]
    unrep = r[r["repaired_session"].isna()]
    rep = r[r["repaired_session"].notna()]
    assert unrep["dropout_session"].notna().mean() > rep["dropout_session"].notna().mean() + 0.2
    overall = truth[truth["kind"] == "dropout"]["client_id"].count() / (600 * 4)
    assert 0.08 <= overall <= 0.35
    appts = pd.concat([c.appointments for c in big.values()])
    missed = appts["status"].ne("attended").mean()
    assert 0.08 <= missed <= 0.30


def alliance_outcome_r(cohorts: dict[str, simulate.Cohort]) -> float:
    """Pooled r between early alliance (mean total, sessions 1-3) and pre-post improvement of
    the clinic's first symptom measure (clients with >= 3 sessions), z-scored within clinic."""
    specs = {s.clinic_id: s for s in default_clinics(len(cohorts))}
    frames = []
    for cid, cohort in cohorts.items():
        spec, m = specs[cid], cohort.measures
        al = m[m["instrument"] == spec.alliance]
        early = al[al["session_number"] <= 3].groupby("client_id")["total"].mean()
        sym = m[m["instrument"] == spec.symptoms[0]].sort_values("session_number")
        g = sym.groupby("client_id")["total"]
        sign = 1 if registry.get(spec.symptoms[0]).direction == "higher_better" else -1
        change = ((g.last() - g.first()) * sign)[g.size() >= 3]
        df = pd.concat([early.rename("a"), change.rename("c")], axis=1, join="inner")
        frames.append((df - df.mean()) / df.std())
    both = pd.concat(frames)
    return float(both["a"].corr(both["c"]))


@pytest.mark.parametrize("seed", [1, 2])
def test_alliance_outcome_correlation_is_the_published_size(seed: int) -> None:
    """Flueckiger et al. 2018: r ~ .28; the cohort must land in .20-.35."""
    big = simulate.simulate(default_clinics(4), SimParams(n_clients=1000), seed=seed)
    assert 0.20 <= alliance_outcome_r(big) <= 0.35


def test_extra_clinics_cycle_the_formats() -> None:
    """Extra clinics cycle the formats with numbered ids (valid clinic ids)."""
    specs = default_clinics(9)
    assert [s.clinic_id for s in specs][4:6] == ["pcoms_north_2", "wai_central_2"]
    assert len({s.clinic_id for s in specs}) == 9
