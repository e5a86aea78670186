"""The scheduler killed mid-run (SIGKILL), then restarted, on the `make up` stack (issue #20 item 5):
two clinics' markers, a `load` in flight (it waits for the warehouse lock an outside process
holds, so the kill lands mid-run every time), the scheduler SIGKILLed and a new one started.
The runs complete (or are retried), every file is loaded exactly once (the warehouse equals
`alliance-watch ingest` of the same files), detection drains every load, and each clinic's data
team gets one receipt naming its files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Mailbox, free_port
from tests.e2e.stack import HOLDER, Stack, alive, generate, session_of, stack_env, wait
from tests.e2e.test_exactly_once import contents

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def scheduler_pid(sid: int) -> int:
    """The scheduler's main process in the stack's session (not the processes it forked)."""
    mains = [
        p
        for p in session_of(sid)
        if "airflow scheduler" in _cmdline(p) and "airflow scheduler" not in _cmdline(_ppid(p))
    ]
    assert len(mains) == 1, mains
    return mains[0]


def comparable(c: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Ingest relations as one clean CLI ingest leaves them: detection drained the pending
    ledger here, and Data Docs paths (a run's timestamp) exist only where docs are built."""
    out = {k: v for k, v in c.items() if k != "detection_pending"}
    out["ingest_files"] = [
        tuple(None if isinstance(v, str) and "/data_docs/" in v else v for v in row)
        for row in c["ingest_files"]
    ]
    return out


def test_the_scheduler_killed_mid_run_then_restarted_loads_every_file_once(
    tmp_path: Path,
) -> None:
    import sys

    from aiosmtpd.controller import Controller

    from pipelines.ingest.run import ingest_all

    home = tmp_path / "home"
    clinics = generate(home, seed=4, clinics=2, clients=30, period="quarter")
    expected_wh = tmp_path / "cli.duckdb"
    ingest_all(home / "config", home / "landing", expected_wh)
    expected = contents(expected_wh)
    files = {c: sorted(p.name for p in (home / "landing" / c).iterdir()) for c in clinics}

    # a warehouse in service: migrated, its analyst snapshot published (discover reads that)
    from pipelines.warehouse import open_warehouse, publish_snapshot

    live = home / "warehouse" / "alliance.duckdb"
    with open_warehouse(live):
        pass
    publish_snapshot(live, home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb")

    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = stack_env(
        home,
        ALLIANCE_WATCH_SMTP_HOST="127.0.0.1",
        ALLIANCE_WATCH_SMTP_PORT=str(smtp.port),
        ALLIANCE_WATCH_SMTP_STARTTLS="false",
    )
    s = Stack(home)
    wh = home / "warehouse" / "alliance.duckdb"
    second: subprocess.Popen[bytes] | None = None
    holder = None
    try:
        s.start(env, watchers=len(clinics))
        sid = int((s.airflow_home / "standalone.pid").read_text())

        # a load in flight: it waits for the lock an outside process holds
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(wh)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stderr is not None
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()[-2000:]
        t0 = time.monotonic()
        for clinic in clinics:
            (home / "inbox" / f"{clinic}.ready").touch()
        wait(
            "a load running",
            lambda: (
                s.sql(
                    "select count(*) from task_instance where task_id = 'load' and state = 'running'"
                )
                >= [(1,)]
            ),
            300,
        )
        victim = scheduler_pid(sid)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic() - t0
        wait("the scheduler gone", lambda: not alive(victim), 10)
        time.sleep(2)
        second = subprocess.Popen(
            [
                "bash",
                "-c",
                f'source "{s.airflow_home / "standalone.state"}"; '
                "exec airflow scheduler --skip-serve-logs",
            ],
            env=env,
            stdout=(tmp_path / "scheduler2.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        restarted_at = time.monotonic() - t0
        time.sleep(5)
        holder.kill()
        holder.wait()
        holder = None

        def done() -> bool:
            ok = s.sql(
                "select count(*) from dag_run where dag_id like 'ingest_%' and state = 'success'"
            )
            return ok == [(len(clinics),)] and s.idle()

        wait("both ingests and their detection", done, 600)
        time.sleep(3)
        wait("an idle stack", s.idle, 120)
        finished_at = time.monotonic() - t0

        failed = s.sql("select dag_id, run_id from dag_run where state = 'failed'")
        assert failed == [], failed
        tries = s.sql(
            "select dag_id, task_id, map_index, try_number, state from task_instance "
            "where dag_id like 'ingest_%' and try_number > 1"
        )
        print(
            f"\nscheduler SIGKILLed {killed_at:.1f} s after the markers, a new one started at "
            f"{restarted_at:.1f} s, both runs done at {finished_at:.1f} s; "
            f"tasks tried again: {tries}"
        )
        # exactly once: the warehouse is what one clean ingest of the same files makes
        assert comparable(contents(wh)) == comparable(expected)
        pending = s.read(wh, "select count(*) from detection_pending")
        assert pending == [(0,)], "detection drained every load"
        # the data teams were told, once each, about every file
        receipts = [m for m in mailbox.emails if "files received" in str(m["Subject"])]
        assert len(receipts) == len(clinics), [str(m["Subject"]) for m in receipts]
        for clinic in clinics:
            (mail,) = [m for m in receipts if f"{clinic}:" in str(m["Subject"])]
            body = mail.get_content()
            assert all(name in body for name in files[clinic]), body
            assert f"{len(files[clinic])} files received" in str(mail["Subject"])
    finally:
        if holder is not None:
            holder.kill()
        if second is not None:
            for pid in session_of(second.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            second.wait(timeout=30)
        s.stop(env, timeout=300)
        smtp.stop()
