"""Assets of Alliance Watch, declared once and imported by producers and consumers."""

from __future__ import annotations

from airflow.sdk import Asset

from pipelines.settings import warehouse_settings

WAREHOUSE_MEASUREMENTS = Asset(
    name="warehouse.measurements", uri="alliance-watch://warehouse/measurements"
)
WAREHOUSE_FLAGS = Asset(name="warehouse.flags", uri="alliance-watch://warehouse/flags")
# New Great Expectations validation results (an ingest run's files): the Data Docs site is
# rendered again from them (`publish_data_docs`), once for a burst of runs.
VALIDATION_RESULTS = Asset(name="validation.results", uri="alliance-watch://validation/results")

# The single DuckDB writer: every task that opens the embedded warehouse file runs in this pool.
EMBEDDED_WRITER_POOL = "duckdb_writer"
# File preparation (reading, the guard, Great Expectations) is CPU-bound: this pool holds as many
# `prepare` tasks at once as the workers have cores (created by `make up` and the compose
# stack's `airflow-init`), so the prepares of many clinics never take every executor slot and
# a clinic whose files are ready loads at once instead of queueing behind them (issue #20).
PREPARE_POOL = "ingest_prepare"
# Tasks on a clinic's way to its flags go first when executor slots are scarce (absolute
# weights: Airflow's default sums the downstream tasks, which put every `prepare` before every
# `load`).
URGENT = {"priority_weight": 100, "weight_rule": "absolute"}
# Detection waits for the loads queued for the writer slot (it drains whatever they queue, so
# one detection after a burst of loads does the work of one per load) and goes before the rest.
AFTER_LOADS = {"priority_weight": 50, "weight_rule": "absolute"}
# CPU-bound batch work (file preparation, Data Docs): after them, whatever waits downstream.
BATCH = {"priority_weight": 1, "weight_rule": "absolute"}


def writer_pool() -> str:
    """The pool for tasks that open the warehouse: one slot where one process at a time may
    open it (the embedded DuckDB file); Airflow's default pool where several workers may write
    at once."""
    return EMBEDDED_WRITER_POOL if warehouse_settings().single_writer else "default_pool"


WRITER_POOL = writer_pool()


def clinic_inbox_asset(clinic_id: str, inbox: str):  # type: ignore[no-untyped-def]
    """The marker asset of one clinic: `inbox/<clinic_id>.ready`, consumed when it fires."""
    from airflow.providers.standard.triggers.file import DirectoryFileDeleteTrigger
    from airflow.sdk import AssetWatcher

    # one directory listing per poke, shared by every clinic's watcher on the same inbox
    trigger = DirectoryFileDeleteTrigger(
        directory=inbox, filename=f"{clinic_id}.ready", poke_interval=0.5
    )
    return Asset(
        name=f"inbox.{clinic_id}",
        uri=f"file://{inbox}/{clinic_id}.ready",
        watchers=[AssetWatcher(name=f"inbox_{clinic_id}_watcher", trigger=trigger)],
    )


def answers_inbox_asset(answers: str):  # type: ignore[no-untyped-def]
    """The clinicians' answers inbox: `answers/answers.ready`, raised by the answer endpoint
    after each answer and consumed when it fires (`ingest_feedback`)."""
    from airflow.providers.standard.triggers.file import DirectoryFileDeleteTrigger
    from airflow.sdk import AssetWatcher

    trigger = DirectoryFileDeleteTrigger(
        directory=answers, filename="answers.ready", poke_interval=1.0
    )
    return Asset(
        name="answers.inbox",
        uri=f"file://{answers}/answers.ready",
        watchers=[AssetWatcher(name="answers_inbox_watcher", trigger=trigger)],
    )
