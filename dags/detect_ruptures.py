"""
### Detect alliance ruptures

Runs whenever `warehouse.measurements` changes. Recomputes features and flags for the clients
the triggering loads touched (all clients when run by hand), updates alert episodes, publishes
the read-only analyst snapshot, and emits `warehouse.flags`. Clinics that opt in
(`notifications.immediate_high_severity`) hear of new high-severity episodes at once.

One detection at a time (each task runs in at most one run at once), but two runs may be
active: while one detects, the next is already created for the loads that landed meanwhile and
starts detecting the moment the first is done, instead of waiting for the first run's notice
task and bookkeeping. Events that arrive while both are active wait and are batched into one run.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task
from failures import DEFAULT_ARGS

from assets import WAREHOUSE_FLAGS, WAREHOUSE_MEASUREMENTS, WRITER_POOL


@dag(
    dag_id="detect_ruptures",
    schedule=[WAREHOUSE_MEASUREMENTS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=2,
    tags=["alliance-watch", "detection"],
    default_args={**DEFAULT_ARGS, "owner": "analytics"},
    doc_md=__doc__,
)
def detect_ruptures() -> None:
    @task(pool=WRITER_POOL, outlets=[WAREHOUSE_FLAGS], max_active_tis_per_dag=1)
    def detect(triggering_asset_events=None, outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
        from pipelines.jobs import clients_from_events, run_detection
        from pipelines.settings import paths_from_env

        extras = [ev.extra for events in (triggering_asset_events or {}).values() for ev in events]
        clients = clients_from_events(extras)
        summary = run_detection(paths_from_env(), clients)
        summary["clients"] = None if clients is None else [list(c) for c in clients]
        outlet_events[WAREHOUSE_FLAGS].extra = {k: v for k, v in summary.items() if k != "clients"}
        return summary

    # in the pool too: it reads the snapshot that the next detection run replaces
    @task(pool=WRITER_POOL, max_active_tis_per_dag=1)
    def notify_high_severity(summary: dict) -> dict:  # type: ignore[no-untyped-def]
        from pipelines.alerts import notify_high_severity as notify
        from pipelines.settings import paths_from_env

        clients = summary.get("clients")
        return notify(paths_from_env(), None if clients is None else [tuple(c) for c in clients])

    notify_high_severity(detect())


detect_ruptures()
