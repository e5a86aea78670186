"""Digests at network scale (issue #20 item 4): clinics rendered in parallel processes from the
read-only analyst snapshot, no writer slot while rendering and sending, the delivery journal
keeping exactly once across an SMTP outage, a rerun and two runs of one week at once; subjects
name the clinic. Real DuckDB files, a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines import jobs
from pipelines import warehouse as wh
from pipelines.deliver.digest import run_weekly_digest
from pipelines.deliver.mailer import SmtpSettings
from pipelines.errors import WarehouseBusy
from pipelines.settings import paths_from_env
from tests.conftest import Mailbox, free_port
from tests.integration.test_digest import (  # noqa: F401 - smtp_server is a fixture
    AS_OF,
    CLINIC,
    DATA_TEAM,
    EMAILS,
    Fixture,
    _ledger,
    make_warehouse,
)

OTHER = "lakeside"  # the same clinicians, also working at a second clinic


def two_clinics(tmp: Path) -> Fixture:
    """The digest tests' clinic, and a copy of it as a second clinic with the same clinicians
    and addresses."""
    fx = make_warehouse(tmp)
    with wh.open_warehouse(fx.warehouse) as conn:
        for (table,) in conn.execute(
            "select table_name from information_schema.columns where column_name = 'clinic_id' "
            "and table_name in (select table_name from information_schema.tables "
            "where table_type = 'BASE TABLE') group by table_name"
        ).fetchall():
            columns = {r[0] for r in conn.execute(f"describe {table}").fetchall()}
            episode = (  # episode ids are unique across clinics
                f", '{OTHER}-' || alert_episode_id as alert_episode_id"
                if "alert_episode_id" in columns
                else ""
            )
            conn.execute(
                f"insert into {table} select * replace ('{OTHER}' as clinic_id{episode}) "  # noqa: S608
                f"from {table} where clinic_id = '{CLINIC}'"
            )
    cfg = (fx.config_dir / "clinics" / f"{CLINIC}.yaml").read_text(encoding="utf-8")
    (fx.config_dir / "clinics" / f"{OTHER}.yaml").write_text(
        cfg.replace(f"clinic_id: {CLINIC}", f"clinic_id: {OTHER}"), encoding="utf-8"
    )
    return fx


def _env(monkeypatch: pytest.MonkeyPatch, fx: Fixture, tmp: Path) -> None:
    monkeypatch.setenv("ALLIANCE_WATCH_HOME", str(tmp))
    monkeypatch.setenv("ALLIANCE_WATCH_WAREHOUSE", str(fx.warehouse))
    monkeypatch.setenv("ALLIANCE_WATCH_CONFIG_DIR", str(fx.config_dir))
    monkeypatch.setenv("ALLIANCE_WATCH_OUTBOX", str(fx.out))


def test_clinics_in_parallel_exactly_once_across_an_smtp_outage_and_a_rerun(
    tmp_path: Path,
    smtp_server: tuple[Mailbox, SmtpSettings],  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder, settings = smtp_server
    fx = two_clinics(tmp_path)
    monkeypatch.setenv("ALLIANCE_WATCH_DIGEST_WORKERS", "2")  # one process per clinic
    down = SmtpSettings(**{**settings.__dict__, "port": free_port(), "attempts": 1})

    outage = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, down)
    assert outage.failed == 6 and outage.sent == 0 and outage.written == 2
    assert not recorder.messages
    back = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    assert back.sent == 6 and back.failed == 0
    again = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    assert again.sent == 0 and again.already_sent == 6

    # each digest reached the server once; a clinician at both clinics tells them apart
    assert len(recorder.messages) == 6
    subjects = sorted(
        str(m["Subject"]) for rcpts, m in recorder.messages if rcpts == [EMAILS["T02"]]
    )
    assert subjects == [
        f"Alliance Watch {c}: 1 new, 0 ongoing (week of 2024-05-06)" for c in (OTHER, CLINIC)
    ]
    assert sum(rcpts == [DATA_TEAM] for rcpts, _ in recorder.messages) == 2
    ledger = _ledger(fx.warehouse)
    assert len(ledger) == 8  # 3 clinicians + the data team, per clinic; one row each
    assert sorted(ledger.status.value_counts().items()) == [("sent", 6), ("written", 2)]
    assert sorted(ledger[ledger.status == "sent"].attempts) == [2] * 6


def test_digests_render_from_the_snapshot_while_a_writer_holds_the_warehouse(
    tmp_path: Path,
    smtp_server: tuple[Mailbox, SmtpSettings],  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-clinic task needs no writer slot: a load holding the live file does not stop
    it; the journal alone keeps a rerun from resending before the ledger is written."""
    recorder, settings = smtp_server
    fx = two_clinics(tmp_path)
    _env(monkeypatch, fx, tmp_path)
    for key, value in (("HOST", "127.0.0.1"), ("PORT", str(settings.port))):
        monkeypatch.setenv(f"ALLIANCE_WATCH_SMTP_{key}", value)
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_STARTTLS", "false")
    paths = paths_from_env()
    assert jobs.run_clinic_digests(paths, AS_OF, CLINIC) == {
        "as_of": AS_OF.isoformat(),
        "skipped": "no analyst snapshot yet",
    }
    wh.publish_snapshot(paths.warehouse, paths.snapshot)
    holder = subprocess.Popen(  # a writer (a load) holds the live warehouse meanwhile
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "c.execute('begin transaction'); print('held', flush=True); time.sleep(120)",
            str(paths.warehouse),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("ALLIANCE_WATCH_LOCK_TIMEOUT_S", "1")
        with pytest.raises(WarehouseBusy):  # the live file is taken ...
            wh.connect(paths.warehouse, read_only=True)
        assert jobs.digest_clinics(paths, None) == [OTHER, CLINIC]
        # ... and the digests go out all the same
        for clinic in (OTHER, CLINIC):
            out = jobs.run_clinic_digests(paths, AS_OF, clinic)
            assert out["sent"] == 3 and out["written"] == 1, out
        rerun = jobs.run_clinic_digests(paths, AS_OF, CLINIC)
        assert rerun["already_sent"] == 3 and rerun["sent"] == 0
    finally:
        holder.kill()
        holder.wait()
    assert len(recorder.messages) == 6
    assert jobs.record_digests(paths, AS_OF, [OTHER, CLINIC])["recorded"] == 8
    ledger = _ledger(paths.warehouse)
    assert len(ledger) == 8 and set(ledger.status) == {"sent", "written"}
    # recording again changes nothing
    jobs.record_digests(paths, AS_OF, None)
    assert len(_ledger(paths.warehouse)) == 8


def test_two_runs_of_one_week_at_once_send_each_digest_once(
    tmp_path: Path,
    smtp_server: tuple[Mailbox, SmtpSettings],  # noqa: F811 - the fixture imported above
) -> None:
    """The timezone DAG and a run by hand of the same week: the week's journal lock makes one
    wait for the other, which then finds every digest sent."""
    recorder, settings = smtp_server
    fx = make_warehouse(tmp_path)
    snapshot = tmp_path / "snapshot.duckdb"
    wh.publish_snapshot(fx.warehouse, snapshot)
    results: list[int] = []

    def run() -> None:
        s = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings, None, snapshot)
        results.append(s.sent)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 3]
    assert len(recorder.messages) == 3
    assert len(_ledger(fx.warehouse)) == 4


def test_a_sent_row_in_the_ledger_is_final_even_without_its_journal(
    tmp_path: Path,
    smtp_server: tuple[Mailbox, SmtpSettings],  # noqa: F811 - the fixture imported above
) -> None:
    """A week sent before the journal existed (or with the outbox moved): the ledger row read
    from the source still stops a resend."""
    recorder, settings = smtp_server
    fx = make_warehouse(tmp_path)
    run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    moved = tmp_path / "another_outbox"
    again = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, moved, settings)
    assert again.already_sent == 3 and again.sent == 0
    assert len(recorder.messages) == 3
    assert dt.date.fromisoformat(str(_ledger(fx.warehouse).week_start.iloc[0])[:10]) == (
        AS_OF - dt.timedelta(days=7)
    )


class GoesDown(Mailbox):
    """A recorder whose server stops (connections refused) once it has accepted `accept`
    messages: SMTP goes down in the middle of the digest run."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept
        self.controller = None  # set once the server runs
        self.stopping: threading.Timer | None = None

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        with self.lock:
            if len(self.messages) >= self.accept:  # going down: refuse, then stop listening
                if self.controller is not None:
                    self.stopping = threading.Timer(0.5, self.controller.stop)
                    self.stopping.start()
                    self.controller = None
                return "421 4.3.2 service shutting down"
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.slow
def test_smtp_down_in_the_middle_of_the_run_then_back_sends_each_digest_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #20 item 5: the relay accepts three digests and goes away mid-run; the rest fail
    with the reason in the delivery ledger; once it is back, the rerun sends only those, and a
    third run sends nothing."""
    from aiosmtpd.controller import Controller

    fx = two_clinics(tmp_path)
    monkeypatch.setenv("ALLIANCE_WATCH_DIGEST_WORKERS", "1")  # one clinic after the other
    port = free_port()
    flaky = GoesDown(accept=3)
    controller = Controller(flaky, hostname="127.0.0.1", port=port)
    flaky.controller = controller
    controller.start()
    settings = SmtpSettings(
        host="127.0.0.1", port=port, starttls=False, attempts=1, backoff_s=0.01, timeout_s=5
    )
    during = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    assert len(flaky.messages) == 3
    assert during.sent == 3 and during.failed == 3, during
    ledger = _ledger(fx.warehouse)
    failed = ledger[ledger.status == "failed"]
    assert len(failed) == 3
    # the operator reads why: the relay could not be reached, in words, never content
    assert all(isinstance(e, str) and e for e in failed.error), failed.error.tolist()
    print("\nledger error of a digest the outage held back:", failed.error.iloc[0])

    assert flaky.stopping is not None
    flaky.stopping.join(timeout=30)  # the relay is down for good; now it comes back
    back = Mailbox()
    again = Controller(back, hostname="127.0.0.1", port=port)
    again.start()
    try:
        rerun = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
        third = run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, settings)
    finally:
        again.stop()
    assert rerun.sent == 3 and rerun.already_sent == 3 and rerun.failed == 0, rerun
    assert third.sent == 0 and third.already_sent == 6
    # exactly once across the outage: six digests, each received by one server once
    received = [(tuple(r), str(m["Subject"])) for r, m in flaky.messages + back.messages]
    assert len(received) == 6 and len(set(received)) == 6, received
    final = _ledger(fx.warehouse)
    assert sorted(final.status.value_counts().items()) == [("sent", 6), ("written", 2)]
