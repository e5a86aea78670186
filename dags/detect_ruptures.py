"""
### Detect alliance ruptures

Runs whenever `warehouse.measurements` changes. Recomputes features and flags for the clients
the triggering loads touched (all clients when run by hand), updates alert episodes, publishes
the read-only analyst snapshot, and emits `warehouse.flags`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from assets import WAREHOUSE_FLAGS, WAREHOUSE_MEASUREMENTS, WRITER_POOL


@dag(
    dag_id="detect_ruptures",
    schedule=[WAREHOUSE_MEASUREMENTS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["alliance-watch", "detection"],
    default_args={"owner": "analytics", "retries": 2, "retry_delay": dt.timedelta(seconds=20)},
    doc_md=__doc__,
)
def detect_ruptures() -> None:
    @task(pool=WRITER_POOL, outlets=[WAREHOUSE_FLAGS])
    def detect(triggering_asset_events=None, outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
        from pipelines.jobs import clients_from_events, run_detection
        from pipelines.settings import paths_from_env

        extras = [ev.extra for events in (triggering_asset_events or {}).values() for ev in events]
        summary = run_detection(paths_from_env(), clients_from_events(extras))
        outlet_events[WAREHOUSE_FLAGS].extra = summary
        return summary

    detect()


detect_ruptures()
