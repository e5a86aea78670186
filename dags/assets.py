"""Assets of Alliance Watch, declared once and imported by producers and consumers."""

from __future__ import annotations

from airflow.sdk import Asset

WAREHOUSE_MEASUREMENTS = Asset(
    name="warehouse.measurements", uri="alliance-watch://warehouse/measurements"
)
WAREHOUSE_FLAGS = Asset(name="warehouse.flags", uri="alliance-watch://warehouse/flags")

# The single DuckDB writer: every task that opens the embedded warehouse file runs in this pool.
WRITER_POOL = "duckdb_writer"


def clinic_inbox_asset(clinic_id: str, inbox: str):  # type: ignore[no-untyped-def]
    """The marker asset of one clinic: `inbox/<clinic_id>.ready`, consumed when it fires."""
    from airflow.providers.standard.triggers.file import DirectoryFileDeleteTrigger
    from airflow.sdk import AssetWatcher

    trigger = DirectoryFileDeleteTrigger(
        directory=inbox, filename=f"{clinic_id}.ready", poke_interval=2.0
    )
    return Asset(
        name=f"inbox.{clinic_id}",
        uri=f"file://{inbox}/{clinic_id}.ready",
        watchers=[AssetWatcher(name=f"inbox_{clinic_id}_watcher", trigger=trigger)],
    )
