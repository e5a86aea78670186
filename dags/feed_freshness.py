"""
### Feed freshness

Daily at 06:00 UTC: a clinic whose newest delivery is older than its `cadence_days` (or that
never delivered) gets a notice to its data team. Also lists markers in the inbox that name no
configured clinic (nothing watches them).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task
from failures import DEFAULT_ARGS

from assets import WRITER_POOL


@dag(
    dag_id="feed_freshness",
    schedule="0 6 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["alliance-watch", "freshness"],
    default_args={**DEFAULT_ARGS, "owner": "data-team"},
    doc_md=__doc__,
)
def feed_freshness() -> None:
    @task(pool=WRITER_POOL)  # reads the ingest ledger in the live warehouse
    def check() -> dict:
        from pipelines.deliver.freshness import check_freshness
        from pipelines.settings import paths_from_env

        return check_freshness(paths_from_env())

    check()


feed_freshness()
