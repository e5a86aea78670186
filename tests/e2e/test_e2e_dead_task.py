"""A task that dies without a word, on the real `make up` stack (issue #20 item 3): a `load`
SIGKILLed together with its supervisor (nothing left to report it) frees the single writer
slot within 60 s, thanks to the heartbeat timeout `make up` sets, and its retry loads every
file exactly once. Then `make down` stops every process the stack started, the task processes
(which Airflow moves into process groups of their own) included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from tests.e2e.test_e2e_airflow import SCRIPT
from tests.e2e.test_e2e_many_clinics import Stack, wait

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(600)
    """
)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether the process lives (a zombie holds nothing and is not counted)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def session_of(sid: int) -> set[int]:
    """The live processes of session `sid`."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            fields = _stat(int(d.name))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
                out.add(int(d.name))
    return out


def task_process(s: Stack, ti_id: str) -> int | None:
    """The pid of the process running the task instance (the task's heartbeat records it)."""
    rows = s.sql("select pid from task_instance where id = ?", [ti_id])
    return int(rows[0][0]) if rows and rows[0][0] and alive(int(rows[0][0])) else None


def hold_warehouse(wh: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(wh)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    return p


def test_a_killed_load_frees_the_slot_within_a_minute_and_down_stops_everything(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "generate", "--out", str(home), "--seed", "5"]
        + ["--clinics", "1", "--clients", "60", "--period", "quarter", "--as-of", "2026-06-01"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (clinic,) = sorted(p.stem for p in (home / "config" / "clinics").glob("*.yaml"))
    files = sorted(p.name for p in (home / "landing" / clinic).iterdir())
    wh = home / "warehouse" / "alliance.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ALLIANCE"))}
    env["ALLIANCE_WATCH_HOME"] = str(home)
    s = Stack(home)
    up = subprocess.run(
        ["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=300
    )
    holder: subprocess.Popen[str] | None = None
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        wait("the watcher", lambda: s.sql("select count(*) from trigger") >= [(1,)], 180)
        wait("start-up runs", lambda: s.sql("select count(*) from dag_run") >= [(2,)], 120)
        wait("an idle stack", s.idle, 180)

        (home / "inbox" / f"{clinic}.ready").touch()
        # the load must be running when it is killed: hold the warehouse once `prepare` is
        # done, so `load` waits for the file lock (a task that is running, in the slot)
        done = "select count(*) from task_instance where task_id = ? and state = 'success'"
        wait("prepare", lambda: s.sql(done, ["prepare"]) == [(1,)], 240, every=0.1)
        holder = hold_warehouse(wh)
        running = "select id from task_instance where task_id = 'load' and state = 'running'"
        wait("a running load", lambda: bool(s.sql(running)), 240, every=0.2)
        ((ti_id,),) = s.sql(running)
        wait("its process", lambda: task_process(s, ti_id) is not None, 30, every=0.2)
        pid = task_process(s, ti_id)
        assert pid is not None
        supervisor = int((_stat(pid) or ["", "0"])[1])
        # task and supervisor at once: nobody is left to tell Airflow (the worst case)
        for victim in (supervisor, pid):
            os.kill(victim, signal.SIGKILL)
        t_kill = time.monotonic()
        holder.kill()
        holder.wait()
        holder = None
        # the try leaves `running` (its row moves to task_instance_history when the retry is
        # scheduled); a busy metadata DB answers [] and counts as not yet
        still = "select count(*) from task_instance where id = ? and state = 'running'"
        wait("the slot freed", lambda: s.sql(still, [ti_id]) == [(0,)], 120, every=0.2)
        freed = time.monotonic() - t_kill
        print(f"\nslot freed {freed:.1f} s after SIGKILL of the load and its supervisor")
        assert freed <= 60
        run_state = "select state from dag_run where dag_id = ? order by id desc limit 1"
        wait("the rerun", lambda: s.sql(run_state, [f"ingest_{clinic}"]) == [("success",)], 300)
        print(f"ingest run succeeded {time.monotonic() - t_kill:.1f} s after the kill")
        assert s.sql("select max(try_number) from task_instance where task_id = 'load'") >= [(2,)]

        wait("an idle stack", s.idle, 300)
        with duckdb.connect(str(wh), read_only=True) as con:
            ledger = con.execute(
                "select file_name, status, rows_in, rows_loaded + rows_quarantined "
                "+ rows_duplicate from ingest_files order by 1"
            ).fetchall()
            dup = con.execute(
                "select count(*) from (select clinic_id, client_id, session_number, instrument "
                "from measurements group by all having count(*) > 1)"
            ).fetchone()
        assert [r[0] for r in ledger] == files, "every file in the ledger exactly once"
        assert all(r[1] == "loaded" and r[2] == r[3] for r in ledger), ledger
        assert dup == (0,)

        # --- `make down` with a task running: the `prepare` of a new marker
        holder = hold_warehouse(wh)
        (home / "inbox" / f"{clinic}.ready").touch()
        running_discover = (
            "select id from task_instance where task_id = 'prepare' and state = 'running'"
        )
        wait("a running task", lambda: bool(s.sql(running_discover)), 120, every=0.2)
        ((ti_id,),) = s.sql(running_discover)
        wait("its process", lambda: task_process(s, ti_id) is not None, 30, every=0.2)
        task_pid = task_process(s, ti_id)
        assert task_pid is not None
        sid = int((home / "airflow-standalone" / "standalone.pid").read_text())
        stat = _stat(task_pid)
        assert stat is not None and int(stat[2]) != sid, "the task has a process group of its own"
        assert int(stat[3]) == sid, "... in the session `make up` started"
        seen = session_of(sid)
        assert task_pid in seen and len(seen) >= 6, seen
    finally:
        t_down = time.monotonic()
        down = subprocess.run(
            ["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120
        )
        print(f"make down: {time.monotonic() - t_down:.1f} s; {down.stdout.strip()}")
        if holder is not None:
            holder.kill()
            holder.wait()
    assert down.returncode == 0, down.stdout + down.stderr
    assert [p for p in seen if alive(p)] == [], "make down left processes running"
    assert session_of(sid) == set()
