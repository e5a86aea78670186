"""
### Publish the Great Expectations Data Docs
Renders the Data Docs site (every validation result stored so far) after ingest runs: each
run's `finish` emits `validation.results`, and one run of this DAG renders the site for every
event queued while it was busy, so ten clinics delivering at once cost one or two renderings
instead of ten side by side (issue #20). The rendering runs at a low CPU priority (nice 10) and
a low task priority: the clinics' loads, detection and receipts come first. Only the data
teams' validation pages wait for it; nothing else reads the site.

A rendering that fails fails this run and emails the operations address; the next ingest's
event renders the whole site again (nothing is lost: the results stay stored).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task
from failures import DEFAULT_ARGS

from assets import BATCH, VALIDATION_RESULTS


@dag(
    dag_id="publish_data_docs",
    schedule=[VALIDATION_RESULTS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["alliance-watch", "validation"],
    default_args={**DEFAULT_ARGS, "owner": "operations"},
    doc_md=__doc__,
)
def publish_data_docs() -> None:
    @task(**BATCH)
    def data_docs() -> str | None:
        import os

        from pipelines.ingest.data_docs import build_when_wanted
        from pipelines.ingest.run import publish_data_docs as publish
        from pipelines.settings import paths_from_env

        os.nice(10)  # after everything on the clinics' path to their flags
        docs = paths_from_env().data_docs
        return build_when_wanted(docs, lambda: publish(docs))

    data_docs()


publish_data_docs()
