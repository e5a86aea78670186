"""Warm-up of an Airflow worker: done once in the process that task processes are forked from
(LocalExecutor: the executor's forkserver, `[scheduler] mp_forkserver_preload` in
`dags/tools/standalone.sh`; CeleryExecutor: the worker's main process, Celery's `imports` in
`dags/celery_config.py`), instead of again in every task process after the fork.

- `pipelines.warmup`: Great Expectations and the pipeline modules the tasks import.
- Airflow's listener manager: a task process's start-up asks it for listeners, which loads every
  plugin (the answers app among them) and the providers' listeners; without this, each task
  paid that before it ran a line of its own (seen as the gap between "Pre Execute" and "DAG
  bundles loaded" in a task log: issue #20, `docs/operations.md`, "Many clinics at once").
- The DagBag module, which each task process uses to parse its DAG file.

Not a DAG file (dags/.airflowignore). Nothing here opens a file, socket or thread: a failure is
logged and the task then does the work itself, as before.
"""

from __future__ import annotations

import logging

import pipelines.warmup  # noqa: F401  (the import is the warm-up)

log = logging.getLogger(__name__)


def _warm_airflow() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag  # noqa: F401
        from airflow.listeners.listener import get_listener_manager

        get_listener_manager()
    except Exception as e:  # noqa: BLE001 - a warm-up must never stop a worker
        log.warning("worker warm-up: Airflow's listeners not preloaded: %s", type(e).__name__)


_warm_airflow()
