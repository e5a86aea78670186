"""Import the heavy modules of the tasks once per worker instead of once per task.

Every Airflow task runs in a process forked from its worker (the task SDK supervisor forks),
so whatever the worker imported before the fork costs the task nothing: Great Expectations is
imported once per worker, not once per ``prepare`` and ``data_docs`` task (its import time is
in benchmarks/README.md).

Importing this module is the warm-up (it has no other use):
- LocalExecutor (``make up``): ``[scheduler] mp_start_method = forkserver`` and
  ``[scheduler] mp_forkserver_preload = ...,pipelines.warmup``: the executor's workers are
  forked from a server that imported this module once.
- CeleryExecutor (docker-compose.yml): Celery's ``imports`` setting names this module
  (``dags/celery_config.py``), so the worker imports it before it forks its pool.

Only imports: no Airflow, no GX context, no files, threads or sockets, nothing that would be
unsafe to share across a fork. A module that fails to import is logged and skipped; the task
that needs it imports it itself, as before.
"""

from __future__ import annotations

import importlib
import logging
import time

log = logging.getLogger(__name__)

# What the task bodies of dags/ import, heaviest first.
MODULES = (
    "great_expectations",
    "pipelines.validation",
    "pipelines.ingest.run",
    "pipelines.jobs",
    "pipelines.deliver.digest",  # matplotlib and Jinja2, for the weekly digest's per-clinic tasks
    "pipelines.deliver.alerts",
    "pipelines.deliver.notify",
    "pipelines.settings",
)


def preload(modules: tuple[str, ...] = MODULES) -> dict[str, float]:
    """Import ``modules``; return the seconds each took (failed ones are left out)."""
    took: dict[str, float] = {}
    for name in modules:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a warm-up must never stop a worker
            log.warning("warm-up: %s not preloaded: %s", name, type(e).__name__)
            continue
        took[name] = time.perf_counter() - t0
    return took


PRELOADED = preload()
