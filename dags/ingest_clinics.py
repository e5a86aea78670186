"""
### Ingest one clinic's exports

One DAG per clinic config (`config/clinics/<clinic_id>.yaml`): adding a YAML adds a DAG.
Triggered when the clinic's data team writes the marker `inbox/<clinic_id>.ready` after its
files (the trigger consumes the marker), or manually with `{"files": ["name.csv", ...]}`.

discover (ledger by sha256, read from the analyst snapshot: no writer slot) -> prepare (read,
de-identification guard, Great Expectations, split valid/quarantined, stage Parquet): the
clinic's small files together in one task, side by side in its worker processes, each file of
`ALLIANCE_WATCH_PREPARE_FANOUT_BYTES` (16 MB) or more in a task of its own -> load in the
single-writer pool, one transaction per file -> event on `warehouse.measurements` with the
clients touched; a receipt to the clinic's data team (each file: loaded, rows held back,
rejected and why); the run's staged Parquet is removed at the end, whatever happened.

A config with an error still gets its DAG: the description and the `config-error` tag show the
error, and `discover` fails with it at once (no retries), which emails the data team.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import dag, task
from failures import DEFAULT_ARGS, contract_errors_fail_fast

from assets import WAREHOUSE_MEASUREMENTS, WRITER_POOL, clinic_inbox_asset


def _clinic_configs(config_dir: Path) -> dict[str, str | None]:
    """clinic_id (the file's stem) -> the config error, or None when the config is valid.
    Only YAML and pydantic here: parsing stays fast, and one broken config never stops the
    other clinics' DAGs."""
    from pipelines.config import load_clinic_config
    from pipelines.errors import ConfigError

    out: dict[str, str | None] = {}
    for path in sorted((config_dir / "clinics").glob("*.y*ml")):
        try:
            load_clinic_config(path)
            out[path.stem] = None
        except ConfigError as e:
            out[path.stem] = str(e)
    return out


def build_ingest_dag(clinic_id: str, inbox: str, config_error: str | None = None):  # type: ignore[no-untyped-def]
    tags = ["alliance-watch", "ingest", f"clinic:{clinic_id}"]

    @dag(
        dag_id=f"ingest_{clinic_id}",
        schedule=[clinic_inbox_asset(clinic_id, inbox)],
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=tags + (["config-error"] if config_error else []),
        description=(
            f"CONFIG ERROR: {config_error}" if config_error else f"Ingest exports of {clinic_id}"
        ),
        default_args={**DEFAULT_ARGS, "owner": "data-team"},
        doc_md=__doc__,
        params={"files": None},
    )
    def ingest() -> None:
        @task
        def discover(params=None) -> list[list[dict]]:  # type: ignore[no-untyped-def]
            """New files, in batches for `prepare` (`pipelines/ingest/batches.py`)."""
            from pipelines.ingest.batches import plan
            from pipelines.ingest.run import discover_from_snapshot
            from pipelines.settings import paths_from_env, prepare_fanout_bytes

            p = paths_from_env().ensure()
            names = (params or {}).get("files")
            with contract_errors_fail_fast():
                items = discover_from_snapshot(
                    clinic_id, p.config_dir, p.landing, p.warehouse, p.snapshot, names
                )
                return plan(items, prepare_fanout_bytes())

        @task
        def prepare(batch: list[dict], run_id=None) -> list[dict]:  # type: ignore[no-untyped-def]
            import logging
            import sys

            # the worker should have imported GX before forking this task (pipelines/warmup.py)
            warm = "great_expectations" in sys.modules
            logging.getLogger("alliance_watch.ingest").info(
                "Great Expectations %s; %d files in this task",
                "preloaded by the worker" if warm else "not preloaded: imported by this task",
                len(batch),
            )
            from pipelines.ingest.run import prepare_items
            from pipelines.settings import paths_from_env, run_stage_dir

            p = paths_from_env().ensure()
            stage = run_stage_dir(p, clinic_id, run_id)
            with contract_errors_fail_fast():
                return prepare_items(batch, clinic_id, p.config_dir, stage, p.data_docs)

        @task(pool=WRITER_POOL, outlets=[WAREHOUSE_MEASUREMENTS])
        def load(staged: list[list[dict]], outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
            from pipelines.ingest.run import load_batches
            from pipelines.settings import paths_from_env

            # index by length: iterating a lazy XCom sequence probes one offset past its end
            batches = [staged[i] for i in range(len(staged))]
            p = paths_from_env()
            summary = load_batches(batches, clinic_id, p.config_dir, p.warehouse, p.snapshot)
            summary["clients"] = [list(c) for c in summary["clients"]]
            outlet_events[WAREHOUSE_MEASUREMENTS].extra = summary
            return summary

        @task
        def receipt(summary: dict, run_id=None) -> dict:  # type: ignore[no-untyped-def]
            """Tell the clinic's data team at once what this run accepted and rejected, and
            why, and the operators of any file held back by a fault of ours (outside the
            writer pool: it never opens the warehouse)."""
            import logging

            from pipelines.deliver.notify import notify_internal_errors, notify_receipt
            from pipelines.settings import paths_from_env

            log = logging.getLogger("alliance_watch.ingest")
            files = summary["files"]
            result = notify_receipt(clinic_id, run_id, files, paths_from_env().config_dir)
            log.info("receipt: sent=%s error=%s", result.ok, result.error)
            ops = notify_internal_errors(clinic_id, run_id, files)
            if ops is not None:  # files held back by a fault of ours: the operators hear of it
                log.warning("internal-error notice: sent=%s error=%s", ops.ok, ops.error)
            return {
                "sent": result.ok,
                "error": result.error,
                "ops_notice": None if ops is None else ops.ok,
            }

        @task
        def data_docs() -> str | None:
            """Render the GX Data Docs site once for this run's files (not per file); while
            another run's build is running, that build renders once more instead."""
            from pipelines.ingest.data_docs import build_when_wanted
            from pipelines.ingest.run import publish_data_docs
            from pipelines.settings import paths_from_env

            docs = paths_from_env().data_docs
            return build_when_wanted(docs, lambda: publish_data_docs(docs))

        @task(trigger_rule="all_done")
        def clean_stage(run_id=None) -> None:  # type: ignore[no-untyped-def]
            """The run's staged Parquet holds clinical rows: it goes whatever happened (a
            failed prepare or load included); a rerun prepares again from the landing files."""
            import shutil

            from pipelines.settings import paths_from_env, run_stage_dir

            shutil.rmtree(run_stage_dir(paths_from_env(), clinic_id, run_id), ignore_errors=True)

        loaded = load(prepare.expand(batch=discover()))
        receipt(loaded)
        loaded >> data_docs()  # a leaf that fails with the load, so the run does too
        loaded >> clean_stage()

    return ingest()


def _register() -> None:
    from pipelines.settings import paths_from_env

    p = paths_from_env()
    for clinic_id, error in _clinic_configs(p.config_dir).items():
        globals()[f"ingest_{clinic_id}"] = build_ingest_dag(clinic_id, str(p.inbox), error)


_register()
