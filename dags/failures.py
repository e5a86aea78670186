"""Failure policy shared by the DAGs: which errors are worth a retry, and who hears of a failure.

Not a DAG file (listed in dags/.airflowignore); imported by the DAG files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def contract_errors_fail_fast() -> Iterator[None]:
    """A broken clinic config or a rejected file will not mend itself: fail the task at once,
    without retries. Everything else (e.g. WarehouseBusy, the DuckDB lock) keeps the task's
    retries with backoff."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.errors import ConfigError, FileRejected

    try:
        yield
    except (ConfigError, FileRejected) as e:
        raise AirflowFailException(f"{type(e).__name__}: {e}") from e


class AlreadyReported(Exception):
    """A task fails because an earlier task of its run failed, whose own failure notice already
    went out: the run must end failed, but a second notice would only repeat the first."""


def notify_unless_reported(context: Any) -> None:
    """on_failure_callback of tasks that fail for an earlier task's failure (`AlreadyReported`):
    no second notice for the same fault; any other failure is notified as usual."""
    if isinstance(context.get("exception"), AlreadyReported):
        log.info("failure already reported by the task that failed first")
        return
    notify_data_team(context)


def notify_data_team(context: Any) -> None:
    """on_failure_callback: email the DAG's owner (the clinic's data team for ingest DAGs, the
    operations address otherwise) with the task, the error and the log address; no data values.
    Never raises: a broken mail relay must not hide the original failure."""
    try:
        from pipelines.deliver.notify import FailureFacts, notify_failure, safe_error_text
        from pipelines.settings import paths_from_env

        ti = context["ti"]
        exc = context.get("exception")
        cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
        facts = FailureFacts(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            try_number=int(ti.try_number or 1),
            max_tries=int(ti.task.retries) + 1 if hasattr(ti, "task") else 1,
            error=safe_error_text(cause),
            log_url=getattr(ti, "log_url", None),
        )
        result = notify_failure(facts, paths_from_env().config_dir)
        log.info("failure notice: sent=%s error=%s", result.ok, result.error)
    except Exception as e:  # noqa: BLE001 - see docstring
        log.warning("failure notice not sent: %s", type(e).__name__)


DEFAULT_ARGS: dict[str, Any] = {
    "retries": 3,
    "retry_delay": dt.timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
    "on_failure_callback": notify_data_team,
    # A task's return value travels as XCom (prepared files carry their clients, a load its
    # summary); the operator would also write it into the task log, and pseudonymous client
    # codes are never logged.
    "show_return_value_in_logs": False,
}
