"""
### Load clinicians' answers to their alerts

Each answer link a clinician clicks in a digest or notice lands in the answers inbox (the
`/answers` endpoint of the API server; `pipelines/answers/app.py`) and raises the marker
`answers/answers.ready`; the watcher consumes the marker and starts this DAG.

`load_answers` (the single-writer pool) loads every answer waiting, exactly once, into
`alert_feedback` (answers for an unknown episode or from a clinician who is not the episode's go
to `alert_feedback_refused` with the reason), removes the files it loaded, and republishes the
analyst snapshot so the next digest, `alert_outcomes` and the report see them. Counts only in
its result: no client codes.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task
from failures import DEFAULT_ARGS

from assets import WRITER_POOL, answers_inbox_asset


def _answers_dir() -> str:
    from pipelines.settings import paths_from_env

    return str(paths_from_env().answers)


@dag(
    dag_id="ingest_feedback",
    schedule=[answers_inbox_asset(_answers_dir())],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["alliance-watch", "answers"],
    default_args={**DEFAULT_ARGS, "owner": "clinical"},
    doc_md=__doc__,
)
def ingest_feedback() -> None:
    @task(pool=WRITER_POOL)
    def load_answers() -> dict:
        from pipelines.answers.load import load_answers as load
        from pipelines.settings import paths_from_env

        return load(paths_from_env().ensure())

    load_answers()


ingest_feedback()
