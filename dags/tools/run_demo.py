"""`make demo`: generate three sample clinics, then run the real DAGs through Airflow
(`dag.test()` on a throwaway SQLite Airflow home) in order ingest -> detect -> digest, and print
a short summary. Not a DAG file (excluded by dags/.airflowignore)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def airflow_env(home: Path, airflow_home: Path) -> dict[str, str]:
    return {
        "ALLIANCE_WATCH_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "dags" / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "dags"), os.environ.get("PYTHONPATH")])
        ),
    }


def prepare_airflow(env: dict[str, str]) -> None:
    """Create the metadata DB and the pools (real Airflow CLI, SQLite)."""
    from pipelines.settings import prepare_slots

    full = {**os.environ, **env}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=full, check=True, capture_output=True)
    for pool, slots, what in (
        ("duckdb_writer", "1", "single DuckDB writer"),
        ("ingest_prepare", str(prepare_slots()), "file preparation (CPU-bound)"),
    ):
        subprocess.run(
            [airflow, "pools", "set", pool, slots, what], env=full, check=True, capture_output=True
        )


def run_dags(as_of: dt.date) -> dict[str, str]:
    """In this process (env already set): dag.test() each DAG; return dag_id -> final state."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    states: dict[str, str] = {}
    order = sorted(d for d in bag.dag_ids if d.startswith("ingest_"))
    order += ["publish_data_docs", "detect_ruptures", "weekly_digest"]
    for dag_id in order:
        dag = bag.get_dag(dag_id)
        conf = {"as_of": as_of.isoformat()} if dag_id == "weekly_digest" else None
        dr = dag.test(run_conf=conf)
        states[dag_id] = str(getattr(dr, "state", dr))
        print(f"  {dag_id:<28} {states[dag_id]}", flush=True)
    return states


def summary(home: Path, as_of: dt.date) -> str:
    from pipelines.settings import paths_from_env
    from pipelines.warehouse import connect

    p = paths_from_env()
    con = connect(p.warehouse, read_only=True)
    lines = ["", "Alliance Watch demo summary", "=" * 27]
    per = con.execute(
        """
        select clinic_id, sum(rows_loaded), sum(rows_quarantined), sum(rows_duplicate),
               count(*) filter (where status = 'rejected' and not retried)
        from ingest_attempts group by 1 order by 1
        """
    ).fetchall()
    lines.append(
        f"{'clinic':<16}{'rows loaded':>12}{'quarantined':>13}{'duplicate':>11}{'files rejected':>16}"
    )
    for clinic, loaded, quar, dup, rej in per:
        lines.append(f"{clinic:<16}{loaded:>12}{quar:>13}{dup:>11}{rej:>16}")
    n_flagged, n_flags = con.execute(
        "select count(distinct (clinic_id, client_id)), count(*) from flags"
    ).fetchall()[0]
    n_clients = con.execute(
        "select count(distinct (clinic_id, client_id)) from measurements"
    ).fetchall()[0][0]
    lines.append(f"clients flagged: {n_flagged} of {n_clients} ({n_flags} flagged sessions)")
    con.close()
    digests = sorted(p.outbox.rglob("*.html"))
    lines += [
        f"warehouse:      {p.warehouse}",
        f"snapshot:       {p.snapshot}",
        f"digests:        {p.outbox} ({len(digests)} HTML files for the week before {as_of})",
        f"GX Data Docs:   {p.data_docs / 'site' / 'index.html'}",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--home", type=Path, default=ROOT / "demo")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep an existing demo folder")
    args = ap.parse_args()
    t0 = time.monotonic()
    home = args.home.resolve()
    if home.exists() and not args.keep:
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, home / "airflow")
    os.environ.update(env)
    sys.path.insert(0, str(ROOT / "dags"))
    print(f"generating sample clinics into {home} ...", flush=True)
    subprocess.run(
        [
            str(Path(sys.executable).with_name("alliance-watch")),
            "generate",
            "--out",
            str(home),
            "--seed",
            str(args.seed),
            "--period",
            "quarter",
        ],
        check=True,
    )
    print("preparing a throwaway Airflow home (SQLite) ...", flush=True)
    prepare_airflow(env)
    import duckdb  # noqa: F401  (fail early if the venv is broken)

    from pipelines.canonical import MEASURES_SCHEMA  # noqa: F401

    as_of = _digest_date(home)
    print("running the DAGs with dag.test():", flush=True)
    states = run_dags(as_of)
    print(summary(home, as_of))
    print(f"wall time: {time.monotonic() - t0:.1f} s")
    failed = [d for d, s in states.items() if "success" not in s]
    if failed:
        print(f"FAILED DAG runs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _digest_date(home: Path) -> dt.date:
    """The Monday after the newest generated session, so the demo digest has a full week."""
    import pyarrow.parquet as pq

    t = pq.read_table(home / "canonical" / "measures.parquet", columns=["session_date"])
    last = max(t.column("session_date").to_pylist())
    return last + dt.timedelta(days=7 - last.weekday())


if __name__ == "__main__":
    sys.exit(main())
