"""Weekly digests end to end: a real DuckDB warehouse, real files in an outbox, a real SMTP
server (aiosmtpd on 127.0.0.1), the delivery ledger."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines import registry
from pipelines import warehouse as wh
from pipelines.deliver.cells import suppress
from pipelines.deliver.digest import Week, run_weekly_digest
from pipelines.deliver.mailer import SmtpSettings
from tests.conftest import Mailbox, free_port, smtp_controller

AS_OF = dt.date(2024, 5, 13)  # covers sessions 2024-05-06 .. 2024-05-12
EVIL = "C<script>alert(1)</script>"
CLINIC = "riverside"
EMAILS = {"T01": "t01@clinic.example", "T02": "t02@clinic.example"}
DATA_TEAM = "data@clinic.example"


# ---------------------------------------------------------------------------------- fixtures


def _measure_rows(
    client: str,
    clinician: str,
    instrument: str,
    totals: list[float],
    start: dt.date,
    items: list[list[float]] | None = None,
) -> list[dict[str, object]]:
    ins = registry.get(instrument)
    rows = []
    for i, total in enumerate(totals):
        if items is not None:
            its = items[i]
        else:
            per = total if ins.scoring == "mean" else total / ins.n_items
            its = [per] * ins.n_items
        row: dict[str, object] = {
            "clinic_id": CLINIC,
            "client_id": client,
            "clinician_id": clinician,
            "session_number": i + 1,
            "session_date": start + dt.timedelta(days=7 * i),
            "instrument": instrument,
            "instrument_version": ins.default_version,
            "total": total,
            "source_file": "measures_2024.csv",
            "source_line": i + 2,
            "sha256": "f" * 64,
            "load_id": 1,
        }
        for j, col in enumerate(registry.ITEM_COLUMNS):
            row[col] = its[j] if j < ins.n_items else None
        rows.append(row)
    return rows


def _flag(
    client: str,
    clinician: str,
    session: int,
    date: dt.date,
    instrument: str,
    severity: str,
    reasons: list[str],
    episode: str,
    is_new: bool,
    total: float,
    previous: float | None,
    baseline: float | None = None,
    fallen: str | None = None,
    evidence: dict[str, object] | None = None,
) -> dict[str, object]:
    ins = registry.get(instrument)
    return {
        "clinic_id": CLINIC,
        "client_id": client,
        "clinician_id": clinician,
        "session_number": session,
        "session_date": date,
        "instrument": instrument,
        "severity": severity,
        "reasons": reasons,
        "alert_episode_id": episode,
        "is_new": is_new,
        "total": total,
        "previous_total": previous,
        "baseline_total": baseline,
        "delta_previous": None if previous is None else total - previous,
        "delta_baseline": None if baseline is None else total - baseline,
        "reliable_change": ins.reliable_change,
        "cutoff": ins.cutoff,
        "fallen_part": fallen,
        "evidence": json.dumps(evidence or {}),
    }


def _episode(
    episode: str,
    client: str,
    clinician: str,
    instrument: str,
    opened: int,
    opened_date: dt.date,
    status: str,
    closed: int | None = None,
    closed_date: dt.date | None = None,
) -> dict[str, object]:
    return {
        "alert_episode_id": episode,
        "clinic_id": CLINIC,
        "client_id": client,
        "clinician_id": clinician,
        "instrument": instrument,
        "opened_session": opened,
        "opened_date": opened_date,
        "last_flag_session": closed - 1 if closed else opened,
        "max_severity": "high",
        "status": status,
        "closed_session": closed,
        "closed_date": closed_date,
    }


def _insert(conn: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, object]]) -> None:
    df = pd.DataFrame(rows)
    conn.register("incoming", df)
    conn.execute(f"insert into {table} by name select * from incoming")  # noqa: S608
    conn.unregister("incoming")


@dataclass
class Fixture:
    warehouse: Path
    config_dir: Path
    out: Path
    # clinician -> clients that must be listed as new / ongoing / repaired this week
    expected_new: dict[str, set[str]] = field(default_factory=dict)
    expected_ongoing: dict[str, set[str]] = field(default_factory=dict)
    expected_repaired: dict[str, set[str]] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)


def make_warehouse(tmp: Path, send_all_clear: bool = False) -> Fixture:
    """A clinic with three clinicians; flags, episodes, measurements and ingest ledger rows
    spread over the week of AS_OF and the weeks around it."""
    config_dir = tmp / "config"
    (config_dir / "clinics").mkdir(parents=True)
    (config_dir / "clinics" / f"{CLINIC}.yaml").write_text(
        "\n".join(
            [
                f"clinic_id: {CLINIC}",
                "timezone: America/New_York",
                "format: reference",
                "clinicians:",
                *[f"  {k}: {v}" for k, v in EMAILS.items()],
                "notifications:",
                f"  data_team_email: {DATA_TEAM}",
                f"  send_all_clear: {'true' if send_all_clear else 'false'}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    path = tmp / "warehouse.duckdb"
    conn = wh.connect(path)
    wh.migrate(conn)
    start = dt.date(2024, 3, 27)  # session 7 falls on 2024-05-08, in the week
    week_day = dt.date(2024, 5, 8)
    m: list[dict[str, object]] = []
    srs_items = [[9.6, 9.6, 9.7, 9.6]] * 6 + [[7.2, 8.6, 8.6, 8.6]]
    m += _measure_rows("C001", "T01", "SRS", [38.5] * 6 + [33.0], start, srs_items)
    m += _measure_rows(
        "C001", "T01", "PHQ-9", [9, 9, 10, 9, 9, 9, 16], start, [[1] * 9] * 6 + [[2] * 7 + [1, 0]]
    )
    m += _measure_rows("C002", "T01", "SRS", [37, 37, 36, 34, 33, 34, 33.5], start)
    m += _measure_rows(EVIL, "T01", "WAI-SR", [4.2, 4.1, 4.2, 4.1, 4.2, 4.1, 3.1], start)
    m += _measure_rows("C003", "T01", "SRS", [38, 38, 38, 38, 38, 33], start)  # flagged last week
    m += _measure_rows("C004", "T01", "SRS", [38, 38, 38, 38, 32, 33, 38], start)  # repaired
    m += _measure_rows("C005", "T02", "SRS", [39, 39, 39, 39, 39, 39, 32], start)
    m += _measure_rows("C007", "T03", "SRS", [39, 39, 39, 39, 39, 39, 32], start)  # no email
    m += _measure_rows("C008", "T02", "SRS", [39] * 7, start)  # never flagged
    _insert(conn, "measurements", m)

    f = [
        _flag(
            "C001",
            "T01",
            7,
            week_day,
            "SRS",
            "high",
            ["below_cutoff", "reliable_drop_previous", "symptom_deterioration"],
            "e1",
            True,
            33.0,
            38.5,
            38.5,
            "bond",  # the detector's word for the SRS relationship item
            {"bond_score": 7.2, "baseline_bond": 9.6, "deteriorated_instruments": ["PHQ-9"]},
        ),
        _flag(
            "C002",
            "T01",
            5,
            dt.date(2024, 4, 24),
            "SRS",
            "medium",
            ["below_cutoff"],
            "e2",
            True,
            33,
            34,
        ),
        _flag("C002", "T01", 7, week_day, "SRS", "medium", ["below_cutoff"], "e2", False, 33.5, 34),
        _flag(
            EVIL,
            "T01",
            7,
            week_day,
            "WAI-SR",
            "low",
            ["deflection", "bond_drop"],
            "e3",
            True,
            3.1,
            4.1,
            4.15,
            None,
        ),
        _flag(
            "C003",
            "T01",
            6,
            dt.date(2024, 5, 1),
            "SRS",
            "high",
            ["reliable_drop_previous"],
            "e4",
            True,
            33,
            38,
        ),
        _flag(
            "C004",
            "T01",
            5,
            dt.date(2024, 4, 24),
            "SRS",
            "high",
            ["reliable_drop_previous"],
            "e5",
            True,
            32,
            38,
        ),
        _flag(
            "C004",
            "T01",
            6,
            dt.date(2024, 5, 1),
            "SRS",
            "medium",
            ["below_cutoff"],
            "e5",
            False,
            33,
            32,
        ),
        _flag(
            "C005",
            "T02",
            7,
            week_day,
            "SRS",
            "high",
            ["reliable_drop_previous", "disengagement", "goal_task_drop"],
            "e6",
            True,
            32,
            39,
            None,
            "goals",
        ),
        _flag(
            "C007",
            "T03",
            7,
            week_day,
            "SRS",
            "high",
            ["reliable_drop_previous"],
            "e7",
            True,
            32,
            39,
        ),
        # dated on the run day itself: belongs to next week's digest
        _flag(
            "C009", "T01", 8, AS_OF, "SRS", "high", ["reliable_drop_previous"], "e8", True, 30, 38
        ),
    ]
    _insert(conn, "flags", f)
    e = [
        _episode("e1", "C001", "T01", "SRS", 7, week_day, "ongoing"),
        _episode("e2", "C002", "T01", "SRS", 5, dt.date(2024, 4, 24), "ongoing"),
        _episode("e3", EVIL, "T01", "WAI-SR", 7, week_day, "ongoing"),
        _episode("e4", "C003", "T01", "SRS", 6, dt.date(2024, 5, 1), "ongoing"),
        _episode("e5", "C004", "T01", "SRS", 5, dt.date(2024, 4, 24), "repaired", 7, week_day),
        _episode("e6", "C005", "T02", "SRS", 7, week_day, "ongoing"),
        _episode("e7", "C007", "T03", "SRS", 7, week_day, "ongoing"),
        _episode("e8", "C009", "T01", "SRS", 8, AS_OF, "ongoing"),
    ]
    _insert(conn, "alert_episodes", e)

    def received(day: dt.date) -> str:
        return f"{day.isoformat()} 15:00:00+00"

    files = [
        {
            "clinic_id": CLINIC,
            "file_name": "measures_w19.csv",
            "sha256": "a" * 64,
            "dataset": "measures",
            "status": "loaded_with_quarantine",
            "rows_in": 120,
            "rows_loaded": 110,
            "rows_quarantined": 10,
            "rows_duplicate": 0,
            "received_at": received(dt.date(2024, 5, 9)),
        },
        {
            "clinic_id": CLINIC,
            "file_name": "measures_bad.csv",
            "sha256": "b" * 64,
            "dataset": "measures",
            "status": "rejected",
            "rows_in": 0,
            "rows_loaded": 0,
            "rows_quarantined": 0,
            "rows_duplicate": 0,
            "error": "wrong_delimiter: the file is not comma-separated",
            "received_at": received(dt.date(2024, 5, 10)),
        },
        {
            "clinic_id": CLINIC,
            "file_name": "appointments_apr.csv",
            "sha256": "c" * 64,
            "dataset": "appointments",
            "status": "loaded",
            "rows_in": 40,
            "rows_loaded": 40,
            "rows_quarantined": 0,
            "rows_duplicate": 0,
            "received_at": received(dt.date(2024, 4, 20)),
        },
    ]
    _insert(conn, "ingest_files", [{k: v for k, v in r.items()} for r in files])
    q = [
        {
            "clinic_id": CLINIC,
            "file_name": "measures_w19.csv",
            "sha256": "a" * 64,
            "line_number": 10 + i,
            "reasons": ["missing_item: item_3 is blank for PHQ-9"]
            if i < 7
            else ["item_out_of_range: item_2 outside 0-3 for PHQ-9"],
            "row_data": json.dumps({"client_id": "[redacted]"}),
        }
        for i in range(10)
    ]
    _insert(conn, "quarantined_rows", q)
    conn.close()
    return Fixture(
        warehouse=path,
        config_dir=config_dir,
        out=tmp / "outbox",
        expected_new={"T01": {"C001", EVIL}, "T02": {"C005"}, "T03": {"C007"}},
        expected_ongoing={"T01": {"C002"}},
        expected_repaired={"T01": {"C004"}},
        absent={"C003", "C008", "C009"},
    )


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return make_warehouse(tmp_path)


def _ledger(path: Path) -> pd.DataFrame:
    conn = wh.connect(path, read_only=True)
    try:
        return conn.execute("select * from digest_deliveries order by clinician_id").df()
    finally:
        conn.close()


def _by_recipient(recorder: Mailbox) -> dict[str, EmailMessage]:
    out: dict[str, EmailMessage] = {}
    for rcpts, msg in recorder.messages:
        assert len(rcpts) == 1
        assert rcpts[0] not in out, "one message per recipient"
        out[rcpts[0]] = msg
    return out


def _parts(msg: EmailMessage) -> tuple[str, str, list[EmailMessage]]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    return text.get_content(), html.get_content(), images  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- tests


def test_week_covers_the_seven_days_before_the_run_date() -> None:
    week = Week.before(AS_OF)
    assert (week.start, week.last_day) == (dt.date(2024, 5, 6), dt.date(2024, 5, 12))


def test_small_cells_are_suppressed() -> None:
    assert [suppress(n) for n in (0, 1, 4, 5, 120)] == ["0", "<5", "<5", "5", "120"]


def test_digest_over_smtp_one_message_per_clinician_with_both_parts_and_chart(
    fx: Fixture, smtp_server: tuple[Mailbox, SmtpSettings]
) -> None:
    recorder, settings = smtp_server
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)

    got = _by_recipient(recorder)
    # T01 and T02 have addresses, T03 has none (outbox only); plus the data team
    assert set(got) == {EMAILS["T01"], EMAILS["T02"], DATA_TEAM}
    # the subject names the clinic: a clinician at two clinics tells their digests apart
    assert got[EMAILS["T02"]]["Subject"] == (
        "Alliance Watch riverside: 1 new, 0 ongoing (week of 2024-05-06)"
    )
    assert got[DATA_TEAM]["Subject"] == "Alliance Watch data: riverside (week of 2024-05-06)"
    assert summary.sent == 3 and summary.written == 1 and summary.failed == 0

    t01 = got[EMAILS["T01"]]
    assert t01["Subject"] == (
        "Alliance Watch riverside: 2 new, 1 ongoing, 1 repaired (week of 2024-05-06)"
    )
    assert t01["From"] == "digest@alliance.example"
    text, html, images = _parts(t01)
    assert max(len(line) for line in text.splitlines()) <= 80  # plain text is wrapped
    text = " ".join(text.split())
    assert "SRS fell from 38.5 to 33.0, below the 36 cutoff" in text
    assert "the relationship item fell most (7.2, usually 9.6)" in text
    assert "PHQ-9 rose from 9 to 16" in text
    assert "Talk about the relationship" in text
    assert "REPAIRED THIS WEEK" in text and "Client C004" in text
    # one inline chart per flagged client, referenced by Content-ID from the HTML
    assert len(images) == 3
    for img in images:
        cid = img["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
        assert img.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'alt="Trajectory. SRS sessions 1-7: 38.5, 38.5' in html

    t02_text, _, t02_images = _parts(got[EMAILS["T02"]])
    t02_text = " ".join(t02_text.split())
    assert "Client C005" in t02_text and "Renegotiate goals and methods" in t02_text
    assert "Reach out after a withdrawal" in t02_text
    assert len(t02_images) == 1

    team_text, team_html, _ = _parts(got[DATA_TEAM])
    assert "Weekly data summary" in team_text
    assert "2 received: 1 loaded_with_quarantine, 1 rejected" in team_text
    assert "wrong_delimiter: 1" in team_text
    assert "missing_item: 7" in team_text and "item_out_of_range: <5" in team_text
    assert max(len(line) for line in team_text.splitlines()) <= 80
    team_text = " ".join(team_text.split())
    assert "appointments: last file received 2024-04-20" in team_text
    assert "Clients newly flagged this week: <5." in team_text

    # the outbox holds the same digests, also for the clinician without an address
    folder = fx.out / CLINIC / "2024-05-06"
    for stem in ("T01", "T02", "T03", "_data_team"):
        for ext in ("html", "txt", "eml"):
            assert (folder / f"{stem}.{ext}").is_file()
    assert "data:image/png;base64," in (folder / "T03.html").read_text(encoding="utf-8")


def test_each_clinician_sees_exactly_their_clients_flagged_that_week(fx: Fixture) -> None:
    run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, None)
    folder = fx.out / CLINIC / "2024-05-06"
    every_client = {"C001", "C002", "C003", "C004", "C005", "C007", "C008", "C009", EVIL}
    for clinician in ("T01", "T02", "T03"):
        text = (folder / f"{clinician}.txt").read_text(encoding="utf-8")
        listed_new = {
            line.split(" - ")[0].removeprefix("Client ")
            for line in text.splitlines()
            if line.startswith("Client ") and "NEW THIS WEEK" in line
        }
        listed_ongoing = {
            line.split(" - ")[0].removeprefix("Client ")
            for line in text.splitlines()
            if line.startswith("Client ") and "STILL FLAGGED" in line
        }
        assert listed_new == fx.expected_new.get(clinician, set())
        assert listed_ongoing == fx.expected_ongoing.get(clinician, set())
        mine = (
            fx.expected_new.get(clinician, set())
            | fx.expected_ongoing.get(clinician, set())
            | fx.expected_repaired.get(clinician, set())
        )
        for other in every_client - mine:
            assert f"Client {other} " not in text and f"Client {other}:" not in text
    assert not (folder / "T04.txt").exists()


def test_every_value_is_html_escaped(fx: Fixture) -> None:
    run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, None)
    html = (fx.out / CLINIC / "2024-05-06" / "T01.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "Client C&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the plain-text part carries the code as it is (text is never interpreted)
    text = (fx.out / CLINIC / "2024-05-06" / "T01.txt").read_text(encoding="utf-8")
    assert f"Client {EVIL} - LOW - NEW THIS WEEK" in text
    text = " ".join(text.split())
    assert "WAI-SR fell from 4.10 to 3.10" in text and "the bond items fell most" in text


def test_rerun_does_not_resend(fx: Fixture, smtp_server: tuple[Mailbox, SmtpSettings]) -> None:
    recorder, settings = smtp_server
    run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    first = len(recorder.messages)
    again = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    assert len(recorder.messages) == first == 3
    assert again.sent == 0 and again.already_sent == 3
    ledger = _ledger(fx.warehouse)
    sent = ledger[ledger.status == "sent"]
    assert len(sent) == 3 and set(sent.attempts) == {1}
    assert sent.message_id.str.endswith("@alliance-watch.local>").all()
    # nothing identifying in the ledger: no addresses, only codes
    assert not ledger.astype(str).apply(lambda c: c.str.contains("@clinic.example")).any().any()


def test_transient_failures_are_retried_within_the_run(
    fx: Fixture, smtp_server: tuple[Mailbox, SmtpSettings]
) -> None:
    recorder, settings = smtp_server
    recorder.fail = 2  # the first message is refused twice, then accepted
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    assert summary.failed == 0 and len(recorder.messages) == 3
    ledger = _ledger(fx.warehouse)
    assert sorted(ledger[ledger.status == "sent"].attempts) == [1, 1, 3]


def test_failed_send_is_recorded_and_retried_on_the_next_run(
    fx: Fixture, smtp_server: tuple[Mailbox, SmtpSettings]
) -> None:
    recorder, settings = smtp_server
    once = SmtpSettings(**{**settings.__dict__, "attempts": 1})
    recorder.fail = 1
    first = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, once)
    assert first.failed == 1 and first.sent == 2
    failed = _ledger(fx.warehouse).query("status == 'failed'")
    assert len(failed) == 1 and failed.error.iloc[0] == "SMTPDataError 451"
    assert failed.attempts.iloc[0] == 1

    second = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, once)
    assert second.sent == 1 and second.already_sent == 2 and second.failed == 0
    ledger = _ledger(fx.warehouse)
    assert set(ledger.status) == {"sent", "written"}
    assert sorted(ledger[ledger.status == "sent"].attempts) == [1, 1, 2]
    assert len(recorder.messages) == 3


def test_unreachable_server_is_recorded_as_failed(fx: Fixture) -> None:
    dead = SmtpSettings(
        host="127.0.0.1", port=free_port(), starttls=False, attempts=2, backoff_s=0.01, timeout_s=2
    )
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, dead)
    assert summary.failed == 3 and summary.written == 1
    ledger = _ledger(fx.warehouse)
    assert set(ledger[ledger.status == "failed"].error) == {"ConnectionRefusedError"}
    assert set(ledger[ledger.status == "failed"].attempts) == {2}


def test_all_clear_only_when_the_clinic_asks(tmp_path: Path) -> None:
    fx = make_warehouse(tmp_path, send_all_clear=True)
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, dt.date(2024, 6, 3), fx.out, None)
    folder = fx.out / CLINIC / "2024-05-27"
    assert {d.clinician_id for d in summary.deliveries if d.kind == "clinician"} == {"T01", "T02"}
    text = (folder / "T01.txt").read_text(encoding="utf-8")
    assert "All clear" in text and "Client " not in text


def test_no_digest_for_a_quiet_week_without_all_clear(fx: Fixture) -> None:
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, dt.date(2024, 6, 3), fx.out, None)
    assert [d.kind for d in summary.deliveries] == ["data_team"]


def test_smtp_settings_from_environment_and_connection() -> None:
    assert SmtpSettings.from_env({}) is None
    s = SmtpSettings.from_env(
        {
            "ALLIANCE_WATCH_SMTP_HOST": "mail.example",
            "ALLIANCE_WATCH_SMTP_PORT": "2525",
            "ALLIANCE_WATCH_SMTP_USER": "u",
            "ALLIANCE_WATCH_SMTP_PASSWORD": "secret",
            "ALLIANCE_WATCH_SMTP_STARTTLS": "true",
            "ALLIANCE_WATCH_SMTP_FROM": "aw@example.org",
        }
    )
    assert s is not None and (s.host, s.port, s.user, s.starttls, s.sender) == (
        "mail.example",
        2525,
        "u",
        True,
        "aw@example.org",
    )
    assert "secret" not in repr(s)
    c = SmtpSettings.from_connection(
        {
            "host": "smtp.example",
            "port": 587,
            "login": "u",
            "password": "p",
            "extra": {"disable_ssl": True, "from_email": "x@example.org"},
        }
    )
    assert (c.port, c.starttls, c.ssl, c.sender) == (587, True, False, "x@example.org")


def test_cli_writes_the_outbox(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from pipelines.cli import digest

    monkeypatch.delenv("ALLIANCE_WATCH_SMTP_HOST", raising=False)
    parser = argparse.ArgumentParser()
    digest.add_arguments(parser)
    args = parser.parse_args(
        [
            "--warehouse",
            str(fx.warehouse),
            "--config-dir",
            str(fx.config_dir),
            "--date",
            "2024-05-13",
            "--out",
            str(fx.out),
        ]
    )
    assert digest.run(args) == 0
    out = capsys.readouterr().out
    assert "4 due, 0 sent, 4 written only, 0 failed" in out
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["--warehouse", "x", "--config-dir", "y", "--date", "13/05/2024", "--out", "z"]
        )


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (no network, no fixtures on disk)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_and_login(fx: Fixture, tmp_path: Path) -> None:
    import ssl

    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    logins: list[str] = []

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
        if ok:
            logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # failure: let the server answer 535

    recorder = Mailbox()
    with smtp_controller(
        recorder,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    ) as controller:
        env = {
            "ALLIANCE_WATCH_SMTP_HOST": "127.0.0.1",
            "ALLIANCE_WATCH_SMTP_PORT": str(controller.port),
            "ALLIANCE_WATCH_SMTP_USER": "digest-bot",
            "ALLIANCE_WATCH_SMTP_PASSWORD": "s3cret",
            "ALLIANCE_WATCH_SMTP_CAFILE": str(cert),
            "ALLIANCE_WATCH_SMTP_FROM": "digest@alliance.example",
        }
        settings = SmtpSettings.from_env(env)
        assert settings is not None and settings.starttls
        summary = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
        assert summary.sent == 3 and summary.failed == 0
        assert logins == ["digest-bot"] * 3
        assert {r[0] for r, _ in recorder.messages} == {EMAILS["T01"], EMAILS["T02"], DATA_TEAM}
        # a wrong password is a permanent refusal: recorded as failed, not retried in the run
        wrong = SmtpSettings(**{**settings.__dict__, "password": "nope"})
        fx2 = make_warehouse(tmp_path / "again")
        failed = run_weekly_digest(fx2.warehouse, fx2.config_dir, AS_OF, fx2.out, wrong)
        assert failed.failed == 3
        ledger = _ledger(fx2.warehouse)
        assert set(ledger[ledger.status == "failed"].error) == {"SMTPAuthenticationError 535"}
        assert set(ledger[ledger.status == "failed"].attempts) == {1}


def test_summary_as_dict_has_counts_only(fx: Fixture) -> None:
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, None)
    d = summary.as_dict()
    assert d["due"] == 4 and d["written"] == 4 and d["clinician_digests"] == 3
    assert json.loads(json.dumps(d)) == d
    assert "C001" not in json.dumps(d) and "@" not in json.dumps(d)


def test_clinic_with_flags_but_no_config_is_named_not_dropped(
    fx: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = wh.connect(fx.warehouse)
    row = _flag(
        "C100", "T01", 7, dt.date(2024, 5, 8), "SRS", "high", ["below_cutoff"], "g1", True, 30, 38
    )
    _insert(conn, "flags", [{**row, "clinic_id": "ghost_clinic"}])
    conn.close()
    summary = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, None)
    assert summary.unconfigured_clinics == ["ghost_clinic"]
    assert summary.as_dict()["unconfigured_clinics"] == ["ghost_clinic"]
    assert not (fx.out / "ghost_clinic").exists()


def test_an_escalated_episode_is_shown_as_worsened(fx: Fixture) -> None:
    import duckdb

    with duckdb.connect(str(fx.warehouse)) as conn:
        conn.execute("update flags set alert_kind = 'escalated' where client_id = 'C002'")
    run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, None)
    text = (fx.out / CLINIC / "2024-05-06" / "T01.txt").read_text(encoding="utf-8")
    assert any(
        line.startswith("Client C002 ") and "WORSENED THIS WEEK" in line
        for line in text.splitlines()
    )
