"""A task that dies without a word, on the real `make up` stack (issue #20 item 3): a `load`
SIGKILLed together with its supervisor (nothing left to report it) frees the single writer
slot within 60 s, thanks to the heartbeat timeout `make up` sets, and its retry loads every
file exactly once. Then `make down` stops every process the stack started, the task processes
(which Airflow moves into process groups of their own) included."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from tests.e2e.stack import (
    Stack,
    alive,
    generate,
    hold_warehouse,
    proc_stat,
    session_of,
    stack_env,
    wait,
)

pytestmark = pytest.mark.slow


def task_process(s: Stack, ti_id: str) -> int | None:
    """The pid of the process running the task instance (the task's heartbeat records it)."""
    rows = s.sql("select pid from task_instance where id = ?", [ti_id])
    return int(rows[0][0]) if rows and rows[0][0] and alive(int(rows[0][0])) else None


def test_a_killed_load_frees_the_slot_within_a_minute_and_down_stops_everything(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    (clinic,) = generate(home, seed=5, clinics=1, clients=60, period="quarter")
    files = sorted(p.name for p in (home / "landing" / clinic).iterdir())
    wh = home / "warehouse" / "alliance.duckdb"
    env = stack_env(home)
    s = Stack(home)
    holder: subprocess.Popen[str] | None = None
    try:
        s.start(env, watchers=1)

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
        supervisor = int((proc_stat(pid) or ["", "0"])[1])
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

        # --- `make down` with a task running: the `load` of a re-sent file, waiting for the
        # warehouse held here. (A `prepare` with nothing new now takes ~0.15 s, too short to
        # catch reliably by polling; a load waiting for the file lock runs until released.)
        holder = hold_warehouse(wh)
        last = home / "landing" / clinic / files[-1]
        resent = last.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]
        last.with_name(f"{last.stem}_resent{last.suffix}").write_text(
            "".join(resent), encoding="utf-8"
        )
        (home / "inbox" / f"{clinic}.ready").touch()
        running_load = "select id from task_instance where task_id = 'load' and state = 'running'"
        wait("a running task", lambda: bool(s.sql(running_load)), 240, every=0.2)
        ((ti_id,),) = s.sql(running_load)
        wait("its process", lambda: task_process(s, ti_id) is not None, 30, every=0.2)
        task_pid = task_process(s, ti_id)
        assert task_pid is not None
        sid = int((home / "airflow-standalone" / "standalone.pid").read_text())
        stat = proc_stat(task_pid)
        assert stat is not None and int(stat[2]) != sid, "the task has a process group of its own"
        assert int(stat[3]) == sid, "... in the session `make up` started"
        seen = session_of(sid)
        assert task_pid in seen and len(seen) >= 6, seen
    finally:
        t_down = time.monotonic()
        down = s.stop(env)
        print(f"make down: {time.monotonic() - t_down:.1f} s; {down.stdout.strip()}")
        if holder is not None:
            holder.kill()
            holder.wait()
    assert down.returncode == 0, down.stdout + down.stderr
    assert [p for p in seen if alive(p)] == [], "make down left processes running"
    assert session_of(sid) == set()
