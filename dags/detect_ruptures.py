"""
### Detect alliance ruptures

Runs whenever `warehouse.measurements` changes, but the events only wake it up: whom to detect
comes from the warehouse's pending-detection ledger, which every load fills in the same
transaction as its rows. `detect` drains it: it recomputes features and flags for every client
queued (plus the clients of their clinics whose open episode has ended), publishes the
read-only analyst snapshot, then removes exactly the ledger rows it read, and emits
`warehouse.flags`. Nothing pending: `detect` is skipped at once (no snapshot, no event).
A run triggered with `{"full": true}` recomputes every client. Clinics that opt in
(`notifications.immediate_high_severity`) hear of new high-severity episodes at once.

One detection at a time (each task runs in at most one run at once), but two runs may be
active: while one detects, the next is already created and starts detecting the moment the
first is done, instead of waiting for the first run's notice task and bookkeeping. Loads that
land while both are active are picked up by the next `detect` that starts, whichever event
created its run: Airflow keeps one queue entry per asset for a DAG at its run limit and the run
made from it consumes only the events up to that entry's first one (docs/operations.md,
"Detection after loads"); the ledger makes that harmless.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task
from failures import DEFAULT_ARGS

from assets import AFTER_LOADS, WAREHOUSE_FLAGS, WAREHOUSE_MEASUREMENTS, WRITER_POOL


@dag(
    dag_id="detect_ruptures",
    schedule=[WAREHOUSE_MEASUREMENTS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=2,
    tags=["alliance-watch", "detection"],
    default_args={**DEFAULT_ARGS, "owner": "analytics"},
    doc_md=__doc__,
    params={"full": False},
)
def detect_ruptures() -> None:
    @task(pool=WRITER_POOL, outlets=[WAREHOUSE_FLAGS], max_active_tis_per_dag=1, **AFTER_LOADS)
    def detect(params=None, outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.jobs import drain_detection
        from pipelines.settings import paths_from_env

        summary = drain_detection(paths_from_env(), full=bool((params or {}).get("full")))
        if not summary["detected"]:
            raise AirflowSkipException("nothing pending: every load is already detected")
        outlet_events[WAREHOUSE_FLAGS].extra = {k: v for k, v in summary.items() if k != "clients"}
        return summary

    # in the pool too: it reads the snapshot that the next detection run replaces
    @task(pool=WRITER_POOL, max_active_tis_per_dag=1)
    def notify_high_severity(summary: dict) -> dict:  # type: ignore[no-untyped-def]
        from pipelines.deliver.alerts import notify_high_severity as notify
        from pipelines.settings import paths_from_env

        clients = summary.get("clients")
        return notify(paths_from_env(), None if clients is None else [tuple(c) for c in clients])

    notify_high_severity(detect())


detect_ruptures()
