"""The `make up` stack (`dags/tools/standalone.sh`) for the end-to-end tests and
benchmarks/bench_many_clinics.py, and the generated clinics they feed it: one place to start and
stop the stack, wait on it, read its metadata DB and warehouse while tasks run, and find or
hold the processes it starts. Not a test module: nothing here is collected."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dags" / "tools" / "standalone.sh"
FLAGS = "select * exclude (detected_at) from flags order by all"


def generate(
    home: Path,
    seed: int,
    clinics: int,
    clients: int,
    period: str = "all",
    as_of: str = "2026-06-01",
) -> list[str]:
    """`alliance-watch generate` into `home` (config/, landing/, truth); the clinic ids."""
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "generate", "--out", str(home), "--seed", str(seed)]
        + ["--clinics", str(clinics), "--clients", str(clients), "--period", period]
        + ["--as-of", as_of],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return clinic_ids(home)


def generate_clinics(home: Path, clinics: int = 10, clients: int = 40) -> list[str]:
    """The many-clinics tests' clinics (seed 11, every period, as of 2026-06-01); their ids."""
    return generate(home, 11, clinics, clients)


def clinic_ids(home: Path) -> list[str]:
    return sorted(p.stem for p in (home / "config" / "clinics").glob("*.yaml"))


def stack_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a stack for `home`: this one without any AIRFLOW_* or ALLIANCE_*
    setting, ALLIANCE_WATCH_HOME, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ALLIANCE"))}
    return env | {"ALLIANCE_WATCH_HOME": str(home)} | extra


def wait(what: str, ok: Callable[[], object], timeout: float, every: float = 0.5) -> None:
    """Until `ok()` is true, polled every `every` s; AssertionError naming `what` after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def digest(rows: list[tuple]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


class Stack:
    """The stack of one ALLIANCE_WATCH_HOME: started, read and stopped from outside."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.airflow_home = home / "airflow-standalone"
        self.snapshot = home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"

    def start(
        self,
        env: dict[str, str],
        watchers: int,
        up_timeout: float = 300,
        ready_timeout: float = 180,
        runs_timeout: float = 120,
        idle_timeout: float = 180,
    ) -> None:
        """`make up`, then wait for `watchers` asset watchers in a triggerer, the runs that fire
        at start (the digest catch-up and freshness) and an idle stack. Call `stop` in a
        `finally` whatever happens here."""
        up = subprocess.run(
            ["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=up_timeout
        )
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        triggers = "select count(*) from trigger where triggerer_id is not null"
        wait(f"{watchers} watchers", lambda: self.sql(triggers) >= [(watchers,)], ready_timeout)
        wait(
            "start-up runs",
            lambda: self.sql("select count(*) from dag_run") >= [(2,)],
            runs_timeout,
        )
        wait("an idle stack", self.idle, idle_timeout)

    def stop(self, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`make down`: every process the stack started stops."""
        return subprocess.run(
            ["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=timeout
        )

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        """Rows of a query on the metadata DB, read-only; [] while it is busy or not created."""
        db = f"file:{self.airflow_home / 'airflow.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(db, uri=True)) as c:
            try:
                return c.execute(query, params or []).fetchall()
            except sqlite3.OperationalError:  # tables not created yet / busy
                return []

    def read(self, db: Path, query: str) -> list[tuple]:
        """Rows of a query on a copy of `db` (never the file a task may be replacing)."""
        copy = self.home / f".read-{db.name}"
        shutil.copyfile(db, copy)
        try:
            with duckdb.connect(str(copy), read_only=True) as con:
                return con.execute(query).fetchall()
        finally:
            copy.unlink(missing_ok=True)

    def snapshot_flags(self) -> list[tuple]:
        if not self.snapshot.exists():
            return []
        try:
            return self.read(self.snapshot, FLAGS)
        except duckdb.CatalogException:
            return []

    def idle(self) -> bool:
        return self.sql("select count(*) from dag_run where state in ('queued', 'running')") == [
            (0,)
        ]


def full_recompute_flags(
    s: Stack, home: Path, full: Path, env: dict[str, str] | None = None
) -> list[tuple]:
    """The flags of a full `alliance-watch detect` on a copy (`full`) of the idle live
    warehouse: what the event-driven runs must have reached."""
    shutil.copyfile(home / "warehouse" / "alliance.duckdb", full)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "detect", "--warehouse", str(full)]
        + ["--config-dir", str(home / "config")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return s.read(full, FLAGS)


# ------------------------------------------------------------------------------- processes

HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(600)
    """
)


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether the process lives (a zombie holds nothing and is not counted)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def session_of(sid: int) -> set[int]:
    """The live processes of session `sid`."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            fields = proc_stat(int(d.name))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
                out.add(int(d.name))
    return out


def hold_warehouse(wh: Path) -> subprocess.Popen[str]:
    """A process holding the warehouse file's lock (a writer must wait) until it is killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(wh)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    return p
