"""Celery settings of the Alliance Watch workers: Airflow's defaults plus one warm-up import.

Not a DAG file (listed in dags/.airflowignore). Selected with
``[celery] celery_config_options = celery_config.CELERY_CONFIG`` (docker-compose.yml); the
folder dags/ is on PYTHONPATH.

Celery's ``imports`` are imported by the worker's main process before it forks its pool, and
every Airflow task runs in a process forked from a pool process, so each task starts with Great
Expectations, the pipeline modules and Airflow's plugins and listeners already loaded
(dags/worker_warmup.py) instead of paying for them again. The scheduler builds the same Celery app but never imports ``imports``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG: dict[str, Any] = {
    **DEFAULT_CELERY_CONFIG,
    "imports": [*DEFAULT_CELERY_CONFIG.get("imports", []), "worker_warmup"],
}
