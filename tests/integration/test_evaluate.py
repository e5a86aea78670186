"""Scoring flags against simulator truth, and the evaluate command on a real warehouse."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli.app import main as cli_main
from pipelines.detect.evaluate import SESSION_KEY, TruthError, evaluate, load_truth, score
from pipelines.detect.ruptures import detect
from pipelines.warehouse import connect, migrate

TRUTH_HEADER = (
    "kind,clinic_id,client_id,instrument,onset_session,part,repaired_session,"
    "dropout_session,last_session\n"
)


def _flags(rows: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame([("c1", client, "SRS", s) for client, s in rows], columns=SESSION_KEY)


def _truth(tmp_path: Path, body: str) -> pd.DataFrame:
    path = tmp_path / "truth.csv"
    path.write_text(TRUTH_HEADER + body, encoding="utf-8")
    return load_truth(path)


def test_score_follows_the_issue_definitions(tmp_path: Path) -> None:
    truth = _truth(
        tmp_path,
        # a: repaired at 6, flagged at onset; b: flagged only two sessions late (a miss for
        # recall, inside the window for precision); d: dropout after an unrepaired rupture,
        # flagged before the last session; low: chronically low, its flags are not judged
        "rupture,c1,a,SRS,4,bond,6,,10\n"
        "rupture,c1,b,SRS,3,goal_task,,,8\n"
        "rupture,c1,d,SRS,5,overall,,7,7\n"
        "chronic_low,c1,low,SRS,,,,,9\n"
        "dropout,c1,d,SRS,,,,7,7\n",
    )
    flags = _flags(
        [
            ("a", 4),  # onset: recall hit, true
            ("a", 7),  # repaired at 6, plus one session of grace: true
            ("a", 8),  # after the grace session: false
            ("b", 5),  # two sessions after onset: not a recall hit, but true
            ("d", 6),  # onset + 1: hit; before the last attended session (7): pre-dropout
            ("x", 2),  # a client without a rupture: false
            ("low", 3),  # chronically low: left out of precision
        ]
    )
    sessions = pd.DataFrame(
        [("c1", c, "SRS", s) for c in ("a", "b", "d", "x", "low") for s in range(1, 11)],
        columns=SESSION_KEY,
    )
    s = score(flags, truth, sessions)
    assert s.recall == pytest.approx(2 / 3)
    assert s.precision == pytest.approx(4 / 6)
    assert s.f1 == pytest.approx(2 * (2 / 3) * (4 / 6) / (2 / 3 + 4 / 6))
    assert s.burden == pytest.approx(7 / 50)
    assert s.pre_dropout == 1.0
    assert s.n_dropout_ruptures == 1


def test_truth_without_the_contract_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    path.write_text("kind,client_id\nrupture,a\n", encoding="utf-8")
    with pytest.raises(TruthError, match="missing columns"):
        load_truth(path)


def _add_srs(conn: object, client: str, totals: list[float]) -> None:
    for i, t in enumerate(totals):
        item = t / 4
        conn.execute(  # type: ignore[attr-defined]
            "insert into measurements (clinic_id, client_id, clinician_id, session_number, "
            "session_date, instrument, instrument_version, item_1, item_2, item_3, item_4, total, "
            "source_file, source_line, sha256, load_id) values "
            "('c1', ?, 't1', ?, ?, 'SRS', '3.0', ?, ?, ?, ?, ?, 'f.csv', 1, 'x', 1)",
            [client, i + 1, dt.date(2025, 1, 6) + dt.timedelta(days=7 * i), *[item] * 4, t],
        )


def test_evaluate_command_prints_detector_and_deployed_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.duckdb"
    conn = connect(path)
    migrate(conn)
    # a ceiling client with a rupture at 5; a client hovering just under the cutoff (the
    # cutoff rules fire at every session); a very steady client with a 1.6-point dip (the 2-SD
    # rule fires: its own SD has no floor)
    _add_srs(conn, "r", [39.6, 39.2, 39.6, 39.2, 32.0, 38.8, 39.6])
    _add_srs(conn, "hover", [35.6, 35.2, 35.6, 35.2, 35.6, 35.2])
    _add_srs(conn, "steady", [38.0, 38.4, 38.0, 38.4, 36.4, 38.0])
    detect(conn)
    conn.close()
    truth = tmp_path / "truth.csv"
    truth.write_text(TRUTH_HEADER + "rupture,c1,r,SRS,5,overall,6,,7\n", encoding="utf-8")
    assert cli_main(["evaluate", "--warehouse", str(path), "--truth", str(truth)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:1].isalpha()}
    assert lines["detector"][:3] == ["1.000", "1.000", "1.000"]  # recall, precision, F1
    for rule in ("cutoff_only", "cutoff_or_1pt_drop", "deflection_2sd"):
        assert float(lines[rule][2]) < 1.0
    assert float(lines["cutoff_or_1pt_drop"][3]) > 0.4  # burden: 8 of 19 sessions
    assert (
        cli_main(["evaluate", "--warehouse", str(path), "--truth", str(tmp_path / "no.csv")]) != 0
    )


def test_detector_beats_deployed_rules_on_a_simulated_cohort() -> None:
    simulate = pytest.importorskip("pipelines.simulate.cohort")
    import duckdb

    cohorts = simulate.simulate(
        simulate.default_clinics(), simulate.SimParams(n_clients=120), seed=99
    )
    conn = duckdb.connect(":memory:")
    migrate(conn)
    for name, table in (
        ("measurements", simulate.measures_table(cohorts)),
        ("appointments", simulate.appointments_table(cohorts)),
    ):
        conn.register("sim_in", table)
        conn.execute(
            f"insert into {name} by name select *, 'sim' as source_file, 0 as source_line, "  # noqa: S608
            "'sim' as sha256, 0 as load_id from sim_in"
        )
        conn.unregister("sim_in")
    truth = pd.concat([c.truth for c in cohorts.values()], ignore_index=True)
    detect(conn)
    results = evaluate(conn, truth)
    ours = results.pop("detector")
    assert ours.burden <= 0.10
    for rule, s in results.items():
        assert ours.f1 > s.f1, rule
