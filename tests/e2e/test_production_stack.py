"""The production configuration, natively: Airflow on a PostgreSQL metadata DB with the
CeleryExecutor, a Celery worker on Redis, and the api-server, scheduler, dag-processor and
triggerer as separate processes (what docker-compose.yml runs in containers). One clinic is
driven end to end: marker -> ingest on the Celery worker -> detection -> flags.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379 (`make services`);
a throwaway database and Redis db 11 are used and removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from cryptography.fernet import Fernet

from tests.conftest import free_port, reachable

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_DB = 11  # not the default db 0 that other users of the local Redis may use
HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)

pytestmark = [pytest.mark.slow, pytest.mark.production]


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as c:
        c.autocommit = True
        c.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("aw_prod")
    (home / "config" / "clinics").mkdir(parents=True)
    (home / "config" / "clinics" / "north.yaml").write_text(
        "clinic_id: north\ntimezone: Europe/Oslo\nformat: reference\n", encoding="utf-8"
    )
    rows = []
    for client, scores in (("N001", [9.5] * 5 + [6]), ("N002", [9.5] * 6)):
        for i, s in enumerate(scores):
            rows.append(
                ",".join(
                    [client, "T01", f"2026-03-{i + 2:02d}", str(i + 1), "SRS", *[str(s)] * 4]
                    + [""] * 9
                )
            )
    (home / "landing" / "north").mkdir(parents=True)
    (home / "landing" / "north" / "measures_w1.csv").write_text(
        "\n".join([HEADER, *rows]) + "\n", encoding="utf-8"
    )
    (home / "inbox").mkdir()
    with celery_stack(home) as running:
        yield running


@contextlib.contextmanager
def celery_stack(home: Path, workers: int = 1) -> Iterator[dict]:
    """The production configuration over `home` (config/, landing/, inbox/ made by the
    caller): a throwaway metadata database, the components, and `workers` Celery workers of
    two processes each; everything stopped and removed afterwards."""
    if not reachable(5432):
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (run `make services`)")
    if not reachable(6379):
        pytest.skip("Redis not reachable on 127.0.0.1:6379 (run `make services`)")
    try:
        db = f"aw_prod_{uuid.uuid4().hex[:10]}"
        _admin_sql(f"create database {db}")
    except Exception as e:  # noqa: BLE001 - the reason is in the skip message
        pytest.skip(f"cannot create a database on the local PostgreSQL: {type(e).__name__}")
    api = free_port()
    pg = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ALLIANCE"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "dags"),
        "ALLIANCE_WATCH_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "dags" / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{db}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        # as docker-compose.yml: quick hand-offs, workers that import GX once before forking
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "celery_config.CELERY_CONFIG",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        # every component must share the secrets: task tokens (JWT), the log servers' key and
        # the Fernet key of encrypted trigger arguments (compose passes them the same way)
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
    }
    setup = (
        "from airflow.utils.db import initdb; from airflow.models import Pool; initdb(); "
        "Pool.create_or_update_pool('duckdb_writer', 1, 'single DuckDB writer', False); "
        "Pool.create_or_update_pool('ingest_prepare', 4, 'file preparation', False)"
    )
    subprocess.run([str(BIN / "python"), "-c", setup], env=env, check=True, capture_output=True)
    logs = home / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    commands = {
        "api-server": ["api-server"],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer"],
        **{
            f"worker{'' if i == 0 else i + 1}": ["celery", "worker", "--concurrency", "2"]
            # a second worker on this machine: its own name and pid file, no second log server
            + (
                []
                if i == 0
                else ["--celery-hostname", f"worker{i + 1}@%h", "--skip-serve-logs"]
                + ["--pid", str(home / f"worker{i + 1}.pid")]
            )
            for i in range(workers)
        },
    }
    try:
        for name, cmd in commands.items():
            with open(logs / f"{name}.log", "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [str(BIN / "airflow"), *cmd],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield {"home": home, "env": env, "db": db, "logs": logs, "procs": procs}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), "flushdb"],
            capture_output=True,
        )
        _admin_sql(f"drop database if exists {db} with (force)")


def _pg_rows(db: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={db}") as c:
        return c.execute(sql).fetchall()  # type: ignore[arg-type]


def _wait(pred, timeout: float, what: str, stack: dict) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        dead = [p.args for p in stack["procs"] if p.poll() is not None]
        assert not dead, f"component exited: {dead}; logs in {stack['logs']}"
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; logs in {stack['logs']}")


def test_one_clinic_end_to_end_on_celery_and_postgres(stack: dict) -> None:
    db = stack["db"]
    # the clinic's watcher is registered and running in the triggerer
    _wait(
        lambda: (
            _pg_rows(db, "select count(*) from trigger where triggerer_id is not null")[0][0] >= 1
        ),
        180,
        "the asset watcher",
        stack,
    )

    # the latest missed digest and freshness runs fire once at start (catchup off) and hold the
    # writer slot and the worker: let them finish so the latency is the marker's alone
    def start_up_runs_done() -> bool:
        busy, started = _pg_rows(
            db,
            "select count(*) filter (where state in ('queued', 'running')), count(*) filter "
            "(where dag_id = 'feed_freshness' or dag_id like 'weekly_digest_%') from dag_run",
        )[0]
        return busy == 0 and started >= 2

    _wait(start_up_runs_done, 180, "the start-up runs to finish", stack)
    time.sleep(2)
    (stack["home"] / "inbox" / "north.ready").touch()
    latency = _wait(
        lambda: (
            _pg_rows(
                db,
                # woken by the load (not the 5-minute sweep, which finds nothing)
                "select count(*) from dag_run where dag_id='detect_ruptures' and state='success' "
                "and run_type != 'scheduled'",
            )[0][0]
            >= 1
        ),
        180,
        "detection after the marker",
        stack,
    )
    print(f"\nCelery/Postgres: marker -> flags {latency:.1f} s")
    # measured 8-9 s (13 s before the workers preloaded GX); see docs/operations.md
    assert latency <= 30, latency
    # the ingest run ends with its `finish` task, which may still run after detection
    _wait(
        lambda: (
            _pg_rows(
                db,
                "select count(*) from dag_run where dag_id like 'ingest_%' and state "
                "in ('running', 'queued')",
            )[0][0]
            == 0
        ),
        120,
        "the ingest run to finish",
        stack,
    )
    runs = _pg_rows(db, "select dag_id, state from dag_run where dag_id like 'ingest_%'")
    assert runs == [("ingest_north", "success")]
    # the tasks really ran on the Celery worker
    hosts = _pg_rows(
        db,
        "select distinct queue, hostname from task_instance where dag_id='ingest_north' "
        "and state <> 'skipped'",  # `prepare_large` (no large file) never ran anywhere
    )
    assert hosts and all(h for _, h in hosts)
    assert "celery@" in (stack["logs"] / "worker.log").read_text(errors="replace")
    # the worker imported GX before forking (Celery `imports`, dags/celery_config.py)
    (log,) = (stack["home"] / "airflow" / "logs").glob(
        "dag_id=ingest_north/run_id=*/task_id=prepare/*.log"
    )
    assert "Great Expectations preloaded by the worker" in log.read_text(), log
    snap = stack["home"] / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"
    copy = stack["home"] / "snap_copy.duckdb"
    shutil.copy(snap, copy)
    con = duckdb.connect(str(copy), read_only=True)
    try:
        flagged = con.execute("select distinct clinic_id, client_id from flags").fetchall()
    finally:
        con.close()
    assert flagged == [("north", "N001")]
