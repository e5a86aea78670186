"""Ten clinics' markers at once on the production configuration (issue #20 acceptance): Celery with
two workers on Redis, the PostgreSQL metadata DB, the embedded warehouse behind the single-writer
pool. Every clinic's flags reach the analyst snapshot, equal to a full recompute of the same
warehouse; the test prints the time from the markers (quoted in docs/operations.md).

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (`make services`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, digest, full_recompute_flags, generate_clinics
from tests.e2e.test_production_stack import _pg_rows, celery_stack

pytestmark = [pytest.mark.slow, pytest.mark.production]


def test_ten_clinics_at_once_on_celery_with_two_workers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    clinics = generate_clinics(home)
    (home / "inbox").mkdir(exist_ok=True)
    s = Stack(home)  # its snapshot reader; the metadata DB is PostgreSQL here
    with celery_stack(home, workers=2) as st:
        db = st["db"]

        def wait(what: str, ok, timeout: float) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if ok():
                    return
                dead = [p.args for p in st["procs"] if p.poll() is not None]
                assert not dead, f"component exited: {dead}; logs in {st['logs']}"
                time.sleep(0.5)
            raise AssertionError(f"timed out waiting for {what}; logs in {st['logs']}")

        def idle() -> bool:
            return _pg_rows(
                db, "select count(*) from dag_run where state in ('queued', 'running')"
            ) == [(0,)]

        wait(
            "ten watchers",
            lambda: (
                _pg_rows(db, "select count(*) from trigger where triggerer_id is not null")[0][0]
                >= 10
            ),
            300,
        )
        wait("start-up runs", lambda: _pg_rows(db, "select count(*) from dag_run")[0][0] >= 2, 180)
        wait("an idle stack", idle, 300)
        time.sleep(2)

        t0 = time.monotonic()
        for clinic in clinics:
            (home / "inbox" / f"{clinic}.ready").touch()
        seen: list[tuple[float, str]] = []

        def done() -> bool:
            flags = s.snapshot_flags()
            if not seen or seen[-1][1] != digest(flags):
                seen.append((time.monotonic() - t0, digest(flags)))
            failed = _pg_rows(db, "select dag_id, run_id from dag_run where state = 'failed'")
            assert failed == [], why(failed)
            ok = _pg_rows(
                db,
                "select count(*) from dag_run where dag_id like 'ingest_%' and state = 'success'",
            )
            return ok == [(10,)] and idle()

        def why(failed: list[tuple]) -> str:
            """The failed runs' task states and the last error lines of their logs."""
            out = [repr(failed)]
            for dag_id, run_id in failed:
                where = f"where dag_id = '{dag_id}' and run_id = '{run_id}'"
                query = f"select task_id, map_index, state, try_number, hostname from task_instance {where}"  # noqa: S608, E501
                out.append(repr(_pg_rows(db, query)))
                for log in (home / "airflow" / "logs" / f"dag_id={dag_id}").rglob("*.log"):
                    lines = log.read_text(errors="replace").splitlines()
                    bad = [x for x in lines if "error" in x.lower() or "Traceback" in x]
                    if bad:
                        out.append(f"{log.relative_to(home)}: " + "\n".join(bad[-6:])[-1500:])
            return "\n".join(out)

        wait("ten ingests and their detection", done, 900)
        time.sleep(3)
        wait("an idle stack", idle, 120)
        done()

        expected = full_recompute_flags(s, home, tmp_path / "full.duckdb")
        assert {r[0] for r in expected} == set(clinics)
        assert s.snapshot_flags() == expected
        reached = next(t for t, d in seen if d == digest(expected))
        # Airflow records the machine's name as the hostname; each Celery worker logs its own
        received = [
            (st["logs"] / f"{w}.log").read_text(errors="replace").count("execute_workload[")
            for w in ("worker", "worker2")
        ]
        workers = sum(1 for n in received if n)
        tis = _pg_rows(
            db,
            "select count(*) from task_instance where dag_id <> 'feed_freshness' "
            "and dag_id not like 'weekly_digest%'",
        )[0][0]
        print(
            f"\nCelery, two workers: marker -> every clinic's flags in the snapshot (ten clinics "
            f"at once): {reached:.1f} s; {tis} task instances; ingest tasks ran on {workers} "
            "workers"
        )
        assert workers == 2, f"both workers took tasks: {received}"
