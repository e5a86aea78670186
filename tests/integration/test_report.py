"""The analyst report: self-contained HTML that renders in headless Chromium without console
errors; a screenshot is kept in the artifacts folder ($ALLIANCE_WATCH_ARTIFACTS)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.warehouse import open_warehouse
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, build_detected_warehouse

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    wh = build_detected_warehouse(root, seed=11, clinics=2)
    out = root / "out" / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "report", "--warehouse", str(wh)]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html)
    for title in (
        "Alliance around ruptures",
        "Flag rates per clinic",
        "Early alliance and outcome",
    ):
        assert title in html
    assert "r = .28" in html


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
)
def test_report_renders_in_chromium_without_console_errors(
    report: Path, artifacts_dir: Path
) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            page.screenshot(path=str(artifacts_dir / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(widths) == 3 and all(w > 0 for w in widths)  # every chart decoded


def one_client_warehouse(path: Path, sessions: int, flag_at: int | None = 5) -> Path:
    """A warehouse of one client (c1/C0001) with weekly SRS sessions 1..`sessions` and, with
    `flag_at`, one high-severity flag opening episode e1 there."""
    import datetime as dt

    with open_warehouse(path) as conn:
        for s in range(1, sessions + 1):
            conn.execute(
                "insert into measurements (clinic_id, client_id, clinician_id, session_number, "
                "session_date, instrument, instrument_version, item_1, item_2, item_3, item_4, "
                "total, source_file, source_line, sha256, load_id) values "
                "('c1', 'C0001', 'T01', ?, ?, 'SRS', '3.0', 9, 9, 9, 9, 36, 'f.csv', ?, 'x', 1)",
                [s, dt.date(2026, 1, 1) + dt.timedelta(days=7 * s), s + 1],
            )
        if flag_at is not None:
            conn.execute(
                "insert into flags (clinic_id, client_id, clinician_id, session_number, "
                "session_date, instrument, severity, reasons, alert_episode_id, is_new) values "
                "('c1', 'C0001', 'T01', ?, date '2026-02-05', 'SRS', 'high', ['deflection'], "
                "'e1', true)",
                [flag_at],
            )
    return path


def test_small_cells_are_suppressed(tmp_path: Path) -> None:
    from pipelines.deliver.report import render_report

    html = render_report(one_client_warehouse(tmp_path / "small.duckdb", sessions=5))
    assert "<td>&lt;10</td>" in html or "<td><10</td>" in html


def test_a_small_count_cannot_be_worked_out_from_the_figures_beside_it(tmp_path: Path) -> None:
    """1 flag in 5 alliance sessions: the count showed as "<10", but the rate (20.0 per 100)
    beside the exact session count gave it away, and so did the total over all clinics; an
    exact episode total beside two exact outcome counts gave away the third. Such figures are
    now withheld."""
    from pipelines.deliver.report import render_report, withhold_complements

    html = render_report(one_client_warehouse(tmp_path / "small.duckdb", sessions=5))
    assert "20.0" not in html and "&ndash;" in html
    assert "1 flagged sessions" not in html and "flagged sessions per clinic below" in html

    rates = [
        {"clinic_id": "a", "flags": 40, "episodes": 25, "flags_per_100": 4.0},
        {"clinic_id": "b", "flags": 30, "episodes": 20, "flags_per_100": 3.0},
    ]
    episodes = [
        {"clinic_id": "a", "repaired": 12, "ongoing": 3, "ended_in_dropout": 10},
        {"clinic_id": "b", "repaired": 10, "ongoing": 0, "ended_in_dropout": 10},
    ]
    totals: dict = {"flags": 70}
    withhold_complements(rates, episodes, totals)
    assert [r["episodes_withheld"] for r in rates] == [True, False]  # a: 25 - 12 - 10 = 3
    assert [r["rate_withheld"] for r in rates] == [False, False]
    assert totals["flags_withheld"] is False


def test_alliance_around_ruptures_needs_ten_clients_not_ten_ruptures(tmp_path: Path) -> None:
    """One client with ten ruptures made a cell of ten: the threshold counts clients."""
    import duckdb

    from pipelines.deliver.report import AROUND_RUPTURES_SQL

    wh = one_client_warehouse(tmp_path / "one.duckdb", sessions=40, flag_at=None)
    with open_warehouse(wh) as conn:
        for k in range(10):  # ten episodes of the same client, opened at 5, 8, 11, ...
            conn.execute(
                "insert into alert_episodes (alert_episode_id, clinic_id, client_id, clinician_id, instrument, opened_session, opened_date, last_flag_session, max_severity, status, closed_session, closed_date) "
                "values (?, 'c1', 'C0001', 'T01', 'SRS', ?, "
                "'2026-03-02', ?, 'high', 'repaired', ?, null)",
                [f"e{k}", 5 + 3 * k, 5 + 3 * k, 6 + 3 * k],
            )
    conn = duckdb.connect(str(wh), read_only=True)
    try:
        assert conn.execute(AROUND_RUPTURES_SQL).fetchall() == []
    finally:
        conn.close()
