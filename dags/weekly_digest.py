"""
### Weekly digest

Every Monday 07:00: one digest per clinician of their flagged clients (evidence and repair
guidance), and one data-quality summary per clinic data team. Idempotent per week: the delivery
ledger keeps a rerun from resending.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from assets import WRITER_POOL


@dag(
    dag_id="weekly_digest",
    schedule="0 7 * * 1",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["alliance-watch", "digest"],
    default_args={"owner": "clinical", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    doc_md=__doc__,
    params={"as_of": None},
)
def weekly_digest() -> None:
    @task(pool=WRITER_POOL)
    def send_digests(params=None, data_interval_end=None, logical_date=None) -> dict:  # type: ignore[no-untyped-def]
        from pipelines.jobs import run_digests
        from pipelines.settings import paths_from_env

        as_of = (params or {}).get("as_of")
        when = (
            dt.date.fromisoformat(as_of)
            if as_of
            else (data_interval_end or logical_date or dt.datetime.now(dt.UTC)).date()
        )
        return run_digests(paths_from_env(), when)

    send_digests()


weekly_digest()
