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
from failures import (
    DEFAULT_ARGS,
    AlreadyReported,
    contract_errors_fail_fast,
    notify_unless_reported,
)

from assets import (
    BATCH,
    PREPARE_POOL,
    URGENT,
    VALIDATION_RESULTS,
    WAREHOUSE_MEASUREMENTS,
    WRITER_POOL,
    clinic_inbox_asset,
)


def _clinic_configs(config_dir: Path, only: str | None = None) -> dict[str, str | None]:
    """clinic_id (the file's stem) -> the config error, or None when the config is valid; with
    `only`, that clinic's alone. Only YAML and pydantic here: parsing stays fast, and one broken
    config never stops the other clinics' DAGs."""
    from pipelines.config import load_clinic_config
    from pipelines.errors import ConfigError

    out: dict[str, str | None] = {}
    for path in sorted((config_dir / "clinics").glob("*.y*ml")):
        if only is not None and path.stem != only:
            continue
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
        @task(pool=PREPARE_POOL, **BATCH)
        def prepare(params=None, run_id=None, ti=None) -> list[list[dict]]:  # type: ignore[no-untyped-def]
            """Discover the new files (the ledger read from the analyst snapshot: no writer
            slot) and prepare the small ones here, side by side in worker processes; files of
            `ALLIANCE_WATCH_PREPARE_FANOUT_BYTES` or more go on to `prepare_large`, one task
            each. One task where there were two: a task's fixed cost is most of a small
            clinic's ingest (issue #20). Returns the large files' batches (what
            `prepare_large` maps over); the prepared small files go to `load` as XCom `staged`."""
            import logging
            import sys

            # the worker should have imported GX before forking this task (worker_warmup.py)
            warm = "great_expectations" in sys.modules
            logging.getLogger("alliance_watch.ingest").info(
                "Great Expectations %s",
                "preloaded by the worker" if warm else "not preloaded: imported by this task",
            )
            from pipelines.ingest.batches import split_small_large
            from pipelines.ingest.run import discover_from_snapshot, prepare_items
            from pipelines.settings import paths_from_env, prepare_fanout_bytes, run_stage_dir

            p = paths_from_env().ensure()
            names = (params or {}).get("files")
            with contract_errors_fail_fast():
                items = discover_from_snapshot(
                    clinic_id, p.config_dir, p.landing, p.warehouse, p.snapshot, names
                )
                small, large = split_small_large(items, prepare_fanout_bytes())
                stage = run_stage_dir(p, clinic_id, run_id)
                staged = prepare_items(small, clinic_id, p.config_dir, stage, p.data_docs)
            ti.xcom_push(key="staged", value=staged)
            return large

        @task(pool=PREPARE_POOL, **BATCH)
        def prepare_large(batch: list[dict], run_id=None) -> list[dict]:  # type: ignore[no-untyped-def]
            """One large file (`prepare`'s fan-out), in parts, in its own task."""
            from pipelines.ingest.run import prepare_items
            from pipelines.settings import paths_from_env, run_stage_dir

            p = paths_from_env().ensure()
            stage = run_stage_dir(p, clinic_id, run_id)
            with contract_errors_fail_fast():
                return prepare_items(batch, clinic_id, p.config_dir, stage, p.data_docs)

        @task(
            pool=WRITER_POOL,
            outlets=[WAREHOUSE_MEASUREMENTS],
            trigger_rule="none_failed",
            **URGENT,
        )
        def load(large: list[list[dict]], ti=None, outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.ingest.run import load_batches
            from pipelines.settings import paths_from_env

            staged = ti.xcom_pull(task_ids="prepare", key="staged") or []
            # index by length: iterating a lazy XCom sequence probes one offset past its end
            batches = [staged] + [large[i] for i in range(len(large or []))]
            if not any(batches):
                # nothing new: the slot is let go at once; no warehouse event, no detection
                raise AirflowSkipException("no new file: nothing to load")
            p = paths_from_env()
            summary = load_batches(batches, clinic_id, p.config_dir, p.warehouse, p.snapshot)
            summary["clients"] = [list(c) for c in summary["clients"]]
            outlet_events[WAREHOUSE_MEASUREMENTS].extra = summary
            return summary

        @task(
            trigger_rule="all_done",
            retries=0,
            on_failure_callback=notify_unless_reported,
            outlets=[VALIDATION_RESULTS],
            **URGENT,
        )
        def finish(run_id=None, ti=None) -> dict:  # type: ignore[no-untyped-def]
            """Whatever happened: remove the run's staged Parquet (clinical rows; a rerun
            prepares again from the landing files). After a load: tell the clinic's data team
            at once what the run accepted and rejected, and why, and the operators of any file
            held back by a fault of ours; the event on `validation.results` then has the Data
            Docs rendered again (`publish_data_docs`, once for a burst of runs). Outside the
            writer pool: it never opens the warehouse. One task where there were three (issue
            #20). No retry: a second try would send the receipt twice."""
            import logging
            import shutil

            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.deliver.notify import notify_internal_errors, notify_receipt
            from pipelines.settings import paths_from_env, run_stage_dir

            log = logging.getLogger("alliance_watch.ingest")
            p = paths_from_env()
            shutil.rmtree(run_stage_dir(p, clinic_id, run_id), ignore_errors=True)
            summary = ti.xcom_pull(task_ids="load")
            if summary is None:
                staged = ti.xcom_pull(task_ids="prepare", key="staged")
                if staged == [] and ti.xcom_pull(task_ids="prepare") == []:
                    raise AirflowSkipException("no new file: nothing to say")
                raise AlreadyReported(
                    "the run did not load (see the task that failed: its notice went out); "
                    "its staged files were removed, no receipt was sent"
                )
            files = summary["files"]
            result = notify_receipt(clinic_id, run_id, files, p.config_dir)
            log.info("receipt: sent=%s error=%s", result.ok, result.error)
            ops = notify_internal_errors(clinic_id, run_id, files)
            if ops is not None:  # files held back by a fault of ours: the operators hear of it
                log.warning("internal-error notice: sent=%s error=%s", ops.ok, ops.error)
            return {
                "sent": result.ok,
                "error": result.error,
                "ops_notice": None if ops is None else ops.ok,
            }

        prepared = prepare()
        large = prepare_large.expand(batch=prepared)
        loaded = load(large)
        prepared >> loaded
        [prepared, large, loaded] >> finish()

    return ingest()


def _register() -> None:
    """A DAG per clinic config. A task process parses this file for its own DAG only (Airflow's
    parsing context names it): it builds that clinic's DAG alone, not every clinic's, which
    with many clinics was a good part of each task's start-up."""
    from airflow.sdk import get_parsing_context

    from pipelines.settings import paths_from_env

    p = paths_from_env()
    wanted = get_parsing_context().dag_id
    only = wanted.removeprefix("ingest_") if wanted and wanted.startswith("ingest_") else None
    for clinic_id, error in _clinic_configs(p.config_dir, only).items():
        globals()[f"ingest_{clinic_id}"] = build_ingest_dag(clinic_id, str(p.inbox), error)


_register()
