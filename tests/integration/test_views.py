"""Analyst views on hand-made data whose answers are known."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipelines import warehouse
from pipelines.ingest.run import ingest_all
from pipelines.warehouse import open_warehouse
from tests.conftest import reference_row


def srs(client: str, session: int, score: float) -> str:
    return reference_row(client, "T01", f"2026-03-{session:02d}", session, "SRS", [score] * 4)


def phq(client: str, session: int, item: int) -> str:
    return reference_row(client, "T01", f"2026-03-{session:02d}", session, "PHQ-9", [item] * 9)


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("views")
    (root / "config" / "clinics").mkdir(parents=True)
    (root / "config" / "clinics" / "ref_clinic.yaml").write_text(
        "clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n"
    )
    landing = root / "landing" / "ref_clinic"
    landing.mkdir(parents=True)
    header = (
        "client_id,clinician_id,session_date,session_number,instrument,"
        + ",".join(f"item_{i}" for i in range(1, 13))
        + ",total"
    )
    rows = []
    rng = np.random.default_rng(1)
    for k in range(12):  # 12 clients: alliance level k, symptom improvement related to it
        base = 5.0 + k * 0.4
        for s in (1, 2, 3):
            rows.append(srs(f"K{k:02d}", s, round(base + 0.1 * s, 1)))
        start = 3
        end = int(max(0, min(3, start - (k // 4) - rng.integers(0, 2))))
        for s, item in ((1, start), (2, start), (3, end)):
            rows.append(phq(f"K{k:02d}", s, item))
    (landing / "measures_1.csv").write_text("\n".join([header, *rows]) + "\n")
    wh = root / "wh.duckdb"
    ingest_all(root / "config", root / "landing", wh)
    return wh


def q(wh: Path, sql: str) -> list[tuple]:
    conn = duckdb.connect(str(wh), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_client_trajectories_deltas_and_direction(wh: Path) -> None:
    srs_rows = q(
        wh,
        "select session_number, total, delta_previous, change_from_baseline, "
        "change_from_baseline_improving from client_trajectories "
        "where client_id = 'K00' and instrument = 'SRS' order by session_number",
    )
    got = [tuple(round(x, 3) if isinstance(x, float) else x for x in r) for r in srs_rows]
    assert got == [(1, 20.4, None, 0.0, 0.0), (2, 20.8, 0.4, 0.4, 0.4), (3, 21.2, 0.4, 0.8, 0.8)]
    # PHQ-9 is higher_worse: a falling score is an improvement
    (row,) = q(
        wh,
        "select change_from_baseline, change_from_baseline_improving from client_trajectories "
        "where client_id = 'K11' and instrument = 'PHQ-9' and session_number = 3",
    )
    assert row[0] < 0 and row[1] == -row[0]


def test_alliance_outcome_r_matches_numpy_and_small_cells_are_suppressed(wh: Path) -> None:
    (row,) = q(wh, "select n, r, r_low, r_high, suppressed, published_r from alliance_outcome")
    n, r, lo, hi, suppressed, published = row
    pairs = q(
        wh,
        """
        select avg(total) filter (where instrument = 'SRS'),
               arg_min(total, session_number) filter (where instrument = 'PHQ-9')
             - arg_max(total, session_number) filter (where instrument = 'PHQ-9')
        from measurements group by client_id
        """,
    )
    a, b = np.array(pairs, dtype=float).T
    assert n == 12 and not suppressed and published == 0.28
    assert r == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-3)
    assert lo < r < hi


def test_small_clinic_is_suppressed(tmp_path: Path, wh: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(wh, copy)
    conn = duckdb.connect(str(copy))
    conn.execute("delete from measurements where client_id >= 'K05'")
    (row,) = conn.execute("select n, r, r_low, suppressed from alliance_outcome").fetchall()
    conn.close()
    assert row == (5, None, None, True)


def test_alliance_outcome_without_variance_or_eligible_clients(tmp_path: Path, wh: Path) -> None:
    """Every client at the SRS ceiling: corr() is NaN, which showed as r = nan with the
    interval 1.00 to 1.00; now r and its interval are null. A pairing with no eligible client
    (symptoms measured at fewer than 3 sessions) vanished from the view; now it shows n = 0."""
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(wh, copy)
    conn = duckdb.connect(str(copy))
    try:
        conn.execute("update measurements set total = 40 where instrument = 'SRS'")
        row = conn.execute(
            "select n, r, r_low, r_high, suppressed from alliance_outcome"
        ).fetchall()
        assert row == [(12, None, None, None, False)]
        conn.execute("delete from measurements where instrument = 'PHQ-9' and session_number = 3")
        row = conn.execute(
            "select alliance_instrument, outcome_instrument, n, r, suppressed from alliance_outcome"
        ).fetchall()
        assert row == [("SRS", "PHQ-9", 0, None, True)]
    finally:
        conn.close()


def test_data_quality_weekly_counts_the_file(wh: Path) -> None:
    (row,) = q(
        wh,
        "select files_received, rows_received, rows_loaded, rows_quarantined, feed_stale "
        "from clinic_data_quality_weekly",
    )
    assert row == (1, 72, 72, 0, False)


def test_rupture_episode_outcomes_in_analyst_words(tmp_path: Path, wh: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(wh, copy)
    conn = duckdb.connect(str(copy))
    for eid, status, closed in (("e1", "repaired", 3), ("e2", "ended", 3), ("e3", "ongoing", None)):
        conn.execute(
            "insert into alert_episodes (alert_episode_id, clinic_id, client_id, clinician_id, instrument, opened_session, opened_date, last_flag_session, max_severity, status, closed_session, closed_date) "
            "values (?, 'ref_clinic', 'K01', 'T01', 'SRS', 2, "
            "'2026-03-02', 2, 'high', ?, ?, null)",
            [eid, status, closed],
        )
    got = conn.execute(
        "select alert_episode_id, outcome, length_sessions, opening_total, closing_total "
        "from rupture_episodes order by 1"
    ).fetchall()
    conn.close()
    assert [(e, o, n) for e, o, n, _, _ in got] == [
        ("e1", "repaired", 2),
        ("e2", "ended_in_dropout", 2),
        ("e3", "ongoing", 1),
    ]
    assert got[0][3] == pytest.approx(22.4) and got[0][4] == pytest.approx(22.8)


def test_an_open_episode_runs_to_its_latest_flagged_session(tmp_path: Path, wh: Path) -> None:
    """An open episode whose flags go on past the session that last raised the alert (its
    last_flag_session) was measured only to that session: length 1 for flags at 2 and 3."""
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(wh, copy)
    conn = duckdb.connect(str(copy))
    try:
        conn.execute(
            "insert into alert_episodes (alert_episode_id, clinic_id, client_id, clinician_id, instrument, opened_session, opened_date, last_flag_session, max_severity, status, closed_session, closed_date) "
            "values ('e3', 'ref_clinic', 'K01', 'T01', 'SRS', 2, "
            "'2026-03-02', 2, 'high', 'ongoing', null, null)"
        )
        for session in (2, 3):
            conn.execute(
                "insert into flags (clinic_id, client_id, clinician_id, session_number, "
                "session_date, instrument, severity, reasons, alert_episode_id, is_new) values "
                "('ref_clinic', 'K01', 'T01', ?, date '2026-03-02', 'SRS', 'high', ['x'], 'e3', ?)",
                [session, session == 2],
            )
        got = conn.execute(
            "select length_sessions, flagged_sessions from rupture_episodes"
        ).fetchall()
    finally:
        conn.close()
    assert got == [(2, 2)]


def test_a_changed_view_file_takes_effect_on_next_open(
    tmp_path: Path, wh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = tmp_path / "sql"
    shutil.copytree(warehouse.sql_dir(), sql)
    view = sql / "views" / "client_trajectories.sql"
    view.write_text(view.read_text().replace("from ordered", ", 1 as marker\nfrom ordered"))
    monkeypatch.setenv("ALLIANCE_WATCH_SQL_DIR", str(sql))
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(wh, copy)
    with open_warehouse(copy) as conn:
        assert conn.execute("select max(marker) from client_trajectories").fetchone() == (1,)


def test_data_quality_counts_a_file_tried_again_once(tmp_path: Path) -> None:
    """A file rewritten while it was read is rejected as `changed_after_discovery` under the
    hash of the bytes it held then, and its new content gets a ledger row of its own: the
    weekly files_received and files_rejected counted one file twice. An attempt not judged
    (changed, unreadable, a fault of ours) and followed by another at the same file name now
    shows as retried, not as a file; one not tried again still counts, as rejected. A file
    judged and rejected, then replaced under the same name, is two files."""
    from pipelines.warehouse import NOT_JUDGED

    wh_path = tmp_path / "wh.duckdb"
    with open_warehouse(wh_path) as conn:
        rows = [
            # (file, sha, status, error, received_at)
            ("a.csv", "1", "loaded", None, "2026-03-03 10:00"),
            ("b.csv", "2", "rejected", "changed_after_discovery: rewritten", "2026-03-02 09:00"),
            ("b.csv", "3", "rejected", "changed_after_discovery: rewritten", "2026-03-02 10:00"),
            ("b.csv", "4", "loaded", None, "2026-03-02 11:00"),
            ("c.csv", "5", "rejected", "unreadable: Permission denied", "2026-03-04 09:00"),
            ("d.csv", "6", "rejected", "empty: the file has no bytes", "2026-03-02 09:00"),
            ("d.csv", "7", "loaded", None, "2026-03-02 10:00"),
            (
                "e.csv",
                "8",
                "rejected",
                "internal_error: KeyError at x.py:1 in f",
                "2026-03-09 09:00",
            ),
            # a fixed-name feed: bytes that failed on our side, then next week's file
            ("f.csv", "9", "rejected", "internal_error: KeyError at x.py:1 in f", "2026-03-02"),
            ("f.csv", "10", "loaded", None, "2026-03-03 09:00"),
            ("g.csv", "11", "duplicate", "same content as 'a.csv', already received", "2026-03-02"),
        ]
        for name, sha, status, error, at in rows:
            conn.execute(
                "insert into ingest_files (clinic_id, file_name, sha256, dataset, status, "
                "rows_in, rows_loaded, rows_quarantined, rows_duplicate, error, received_at) "
                "values ('ref_clinic', ?, ?, 'measures', ?, 0, 0, 0, 0, ?, ?)",
                [name, sha, status, error, at],
            )
        got = conn.execute(
            "select week_start::varchar, files_received, files_rejected, attempts_retried "
            "from clinic_data_quality_weekly order by week_start"
        ).fetchall()
        retried = conn.execute(
            "select file_name, count(*) filter (where retried) from ingest_attempts "
            "group by 1 order by 1"
        ).fetchall()
    # week of 2 March: a, b (its new content), c (not readable yet), d twice (judged twice),
    # f twice (its failed bytes never loaded), g; b's two rewritten attempts are retried.
    # Week of 9 March: e, not yet tried again.
    assert got == [("2026-03-02", 8, 3, 2), ("2026-03-09", 1, 1, 0)]
    assert dict(retried) == {"b.csv": 2} | {f"{c}.csv": 0 for c in "acdefg"}
    codes = {r[0] for r in q(wh_path, "select reason_code from ingest_attempts")}
    assert codes == {"changed_after_discovery", "unreadable", "empty", "internal_error", None}
    # the view retries every code that judged nothing, except internal_error and stage_full,
    # whose row the next attempt at the same bytes replaces (see the view)
    view = (warehouse.sql_dir() / "views" / "ingest_attempts.sql").read_text()
    (listed,) = re.findall(r"reason_code in \(([^)]*)\)", view)
    replaced = {"internal_error", "stage_full"}
    assert set(re.findall(r"'([a-z_]+)'", listed)) == set(NOT_JUDGED) - replaced


def test_data_team_summary_counts_a_file_tried_again_once(tmp_path: Path) -> None:
    """The data team's weekly summary reads the same rule: a rewritten file's attempt under the
    hash of its earlier bytes is no file received nor rejected; a persistent fault is."""
    import datetime as dt

    from pipelines.config import load_clinic_config
    from pipelines.deliver.digest import Week, build_data_team_summary

    config = tmp_path / "ref_clinic.yaml"
    config.write_text("clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n")
    cfg = load_clinic_config(config)
    with open_warehouse(tmp_path / "wh.duckdb") as conn:
        for name, sha, status, error in (
            ("b.csv", "2", "rejected", "changed_after_discovery: rewritten"),
            ("b.csv", "3", "loaded", None),
            ("c.csv", "5", "rejected", "unreadable: Permission denied"),
        ):
            conn.execute(
                "insert into ingest_files (clinic_id, file_name, sha256, dataset, status, "
                "rows_in, rows_loaded, rows_quarantined, rows_duplicate, error, received_at) "
                "values ('ref_clinic', ?, ?, 'measures', ?, 0, 0, 0, 0, ?, "
                "timestamp '2026-03-03 09:00' + to_minutes(?))",
                [name, sha, status, error, int(sha)],
            )
        s = build_data_team_summary(conn, cfg, Week.before(dt.date(2026, 3, 9)))
    assert s.files_received == 2
    assert dict(s.files_by_status) == {"loaded": 1, "rejected": 1}
    assert dict(s.rejected_by_reason) == {"unreadable": 1}


def test_the_data_teams_summary_says_when_the_alert_ceiling_raised_the_threshold(
    tmp_path: Path,
) -> None:
    """Issue 15: without a budget, a clinic flagged above its alert ceiling gets a raised
    threshold and fewer alerts; its data team reads why, and how to change it, in the weekly
    summary. A clinic with a budget chose its thresholds, and a week the ceiling did not touch
    says nothing."""
    import datetime as dt

    from pipelines.config import load_clinic_config
    from pipelines.deliver.digest import Week, build_data_team_summary, render_data_team_summary

    base = "clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n"
    notes = {}
    with open_warehouse(tmp_path / "wh.duckdb") as conn:
        conn.execute(
            "insert into detect_calibration (clinic_id, instrument, week_start, "
            "n_calibration_sessions, budget_threshold) values "
            "('ref_clinic', 'SRS', date '2026-03-02', 400, 3.1), "
            "('ref_clinic', 'WAI-SR', date '2026-03-02', 400, null), "
            "('other', 'SRS', date '2026-03-02', 400, 4.0)"
        )
        for name, extra, day in (
            ("default", "", dt.date(2026, 3, 9)),
            ("budget", "thresholds:\n  alert_budget: 0.05\n", dt.date(2026, 3, 9)),
            ("off", "thresholds:\n  alert_ceiling: false\n", dt.date(2026, 3, 9)),
            ("week_after", "", dt.date(2026, 3, 16)),
        ):
            (tmp_path / name).mkdir()
            config = tmp_path / name / "ref_clinic.yaml"
            config.write_text(base + extra)
            summary = build_data_team_summary(conn, load_clinic_config(config), Week.before(day))
            notes[name] = summary.ceiling_note
            if name == "default":
                text = render_data_team_summary(summary).text
    assert notes["default"] is not None
    assert "above 8.5% of alliance sessions" in notes["default"]
    assert "(SRS to 3.10; default 2.25)" in notes["default"]
    assert "thresholds.alert_ceiling" in notes["default"]
    assert "Alert ceiling: flags had run above 8.5%" in " ".join(text.split())
    assert notes["budget"] is None and notes["off"] is None and notes["week_after"] is None


def test_the_data_teams_summary_lists_the_sessions_detection_leaves_out(tmp_path: Path) -> None:
    """A session dated after a later-numbered session of its series (a typo in a date) is left
    out of detection; the clinic's data team reads which one and where it was delivered (the
    client's code, never a value from the file), and that it comes back once corrected."""
    import datetime as dt

    from pipelines.config import load_clinic_config
    from pipelines.deliver.digest import Week, build_data_team_summary, render_data_team_summary
    from pipelines.detect.ruptures import detect
    from tests.integration.test_detect_edge_cases import one_date_typed_late

    config = tmp_path / "c1.yaml"
    config.write_text("clinic_id: c1\ntimezone: Europe/Berlin\nformat: reference\n")
    cfg = load_clinic_config(config)
    week = Week.before(dt.date(2025, 3, 17))
    with open_warehouse(tmp_path / "wh.duckdb") as conn:
        one_date_typed_late(conn)
        detect(conn)
        summary = build_data_team_summary(conn, cfg, week)
        rendered = render_data_team_summary(summary)
        conn.execute(
            "update measurements set session_date = session_date - 21 where "
            "client_id = 'back' and session_number = 6"
        )
        detect(conn)
        after = build_data_team_summary(conn, cfg, week)
    assert summary.excluded_sessions == (
        "client back: SRS session 6 is dated after session 7 of the same series (f.csv, line 1)",
    )
    text = " ".join(rendered.text.split())
    assert "SESSIONS LEFT OUT OF DETECTION" in text
    assert "client back: SRS session 6 is dated after session 7" in text
    section = rendered.text.split("SESSIONS LEFT OUT OF DETECTION")[1].split("STALE FEEDS")[0]
    assert not re.search(r"\d{4}-\d{2}-\d{2}", section)  # no date from the file
    assert "Sessions left out of detection" in rendered.html_email
    assert after.excluded_sessions == ()
    assert "LEFT OUT" not in render_data_team_summary(after).text


def test_flags_with_evidence_shows_the_thresholds_the_rules_used(tmp_path: Path) -> None:
    """A clinic with its own SRS cutoff (35): the view showed only the registry's 36 as if the
    rules had used it, and left out alert_kind."""
    wh_path = tmp_path / "wh.duckdb"
    with open_warehouse(wh_path) as conn:
        conn.execute(
            "insert into flags (clinic_id, client_id, clinician_id, session_number, session_date, "
            "instrument, severity, reasons, alert_episode_id, is_new, alert_kind, cutoff, "
            "reliable_change) values ('c1', 'C0001', 'T01', 5, date '2026-02-05', 'SRS', 'high', "
            "['below_cutoff'], 'e1', true, 'opened', 35, 4.5)"
        )
        row = conn.execute(
            "select alert_kind, cutoff, reliable_change, instrument_cutoff from flags_with_evidence"
        ).fetchall()
    assert row == [("opened", 35.0, 4.5, 36.0)]


def test_data_quality_judges_each_clinic_by_its_own_cadence_and_timezone(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    """The view called a feed stale after a fixed 14 days while the freshness notice used the
    clinic's cadence_days (7 by default), and counted weeks in the reader's timezone while the
    data team's summary used the clinic's. An ingest now records both in clinic_settings and
    the view reads them."""
    import datetime as dt

    from tests.e2e.test_exactly_once import srs

    write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    wh_path = tmp_path / "wh.duckdb"
    ingest_all(reference_config_dir, tmp_path / "landing", wh_path)  # Europe/Berlin, 7 days
    with open_warehouse(wh_path) as conn:
        assert conn.execute(
            "select clinic_id, timezone, cadence_days from clinic_settings"
        ).fetchall() == [("ref_clinic", "Europe/Berlin", 7)]
        # received 10 days ago, late on a Sunday evening UTC (Monday morning in Berlin)
        sunday = "date_trunc('week', now() - interval 10 day) - interval 1 hour"
        conn.execute(f"update ingest_files set received_at = {sunday}")  # noqa: S608
        week, monday_utc_week, stale, cadence = conn.execute(
            f"select w.week_start, cast(date_trunc('week', timezone('UTC', {sunday})) as date), "  # noqa: S608
            "w.feed_stale, w.cadence_days from clinic_data_quality_weekly as w"
        ).fetchall()[0]
        assert cadence == 7 and stale is True  # 10 days > 7
        assert week == monday_utc_week + dt.timedelta(days=7)
    cfg = reference_config_dir / "clinics" / "ref_clinic.yaml"
    cfg.write_text(cfg.read_text() + "cadence_days: 14\n")
    ingest_all(reference_config_dir, tmp_path / "landing", wh_path)  # nothing new; settings
    with open_warehouse(wh_path) as conn:
        # 10 days ago exactly: the Sunday evening above is 10-17 days ago by the weekday the
        # test runs on (past 14 from Sunday night to Wednesday), which is no test of 14 days
        conn.execute("update ingest_files set received_at = now() - interval 10 day")
        assert conn.execute(
            "select cadence_days, feed_stale from clinic_data_quality_weekly"
        ).fetchall() == [(14, False)]


def test_clinic_settings_twice_for_a_clinic_count_its_files_once(tmp_path: Path) -> None:
    """Two first writers on DuckLake (no keys) can both insert a clinic's settings: the view
    joined both rows and doubled every count. It reads the latest row, and the next write
    leaves one."""
    from pipelines.warehouse import record_clinic_settings

    with open_warehouse(tmp_path / "wh.duckdb") as conn:
        conn.execute(
            "insert into ingest_files (clinic_id, file_name, sha256, status, rows_in, "
            "rows_loaded, rows_quarantined, rows_duplicate) values "
            "('c1', 'm.csv', 'a', 'loaded', 3, 3, 0, 0)"
        )
        # the table as DuckLake has it: no key
        conn.execute("drop table clinic_settings")
        conn.execute(
            "create table clinic_settings (clinic_id varchar, timezone varchar, "
            "cadence_days integer, updated_at timestamptz)"
        )
        for tz, at in (("UTC", "2026-01-01"), ("Europe/Berlin", "2026-01-02")):
            conn.execute("insert into clinic_settings values ('c1', ?, 7, ?)", [tz, at])
        rows = conn.execute(
            "select files_received, rows_received from clinic_data_quality_weekly"
        ).fetchall()
        assert rows == [(1, 3)]
        record_clinic_settings(conn, "c1", "Europe/Berlin", 7)
        record_clinic_settings(conn, "c1", "Europe/Berlin", 7)
        assert conn.execute("select count(*) from clinic_settings").fetchall() == [(1,)]
