"""
### Weekly digest

Monday 07:00 in each clinic's own timezone: one digest per clinician of their flagged clients
(evidence and repair guidance), and one data-quality summary per clinic data team.

One DAG per distinct clinic timezone, `weekly_digest_<timezone>`, on a
`CronTriggerTimetable("0 7 * * 1", timezone=...)`: the UI shows each next run in local time,
daylight-saving changes are the timetable's job, and a clinic joins its timezone's DAG by its
config alone. `weekly_digest` itself runs by hand only (all clinics, `{"as_of": "YYYY-MM-DD"}`).
Catchup is off and every run is idempotent per week: the delivery ledger keeps a rerun from
resending.

`plan` lists the clinics; `send_clinic` (one per clinic, in parallel, no writer slot) renders
from the analyst snapshot and journals each delivery beside the outbox; `record_deliveries`
mirrors the journals into the warehouse ledger in one short write (the `duckdb_writer` pool).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable
from failures import DEFAULT_ARGS

from assets import WRITER_POOL

DIGEST_CRON = "0 7 * * 1"  # Monday 07:00, local time of the clinic


def timezone_slug(tz: str) -> str:
    """A dag_id-safe name for a timezone (Etc/GMT+5 and Etc/GMT-5 stay apart)."""
    return re.sub(r"[^a-z0-9]+", "_", tz.lower().replace("+", "plus").replace("-", "minus")).strip(
        "_"
    )


def _clinics_by_timezone(config_dir: Path) -> dict[str, list[str]]:
    # Invalid configs are skipped here; their ingest DAG shows the error.
    from pipelines.config import load_clinic_configs
    from pipelines.errors import ConfigError

    try:
        configs, _errors = load_clinic_configs(config_dir)
    except ConfigError:
        return {}
    out: dict[str, list[str]] = {}
    for clinic_id, cfg in sorted(configs.items()):
        out.setdefault(cfg.timezone, []).append(clinic_id)
    return out


def build_digest_dag(dag_id: str, timezone: str | None, clinic_ids: list[str] | None):  # type: ignore[no-untyped-def]
    schedule = None if timezone is None else CronTriggerTimetable(DIGEST_CRON, timezone=timezone)

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["alliance-watch", "digest"] + ([f"tz:{timezone}"] if timezone else []),
        description=(
            f"Monday 07:00 {timezone}: {', '.join(clinic_ids or [])}"
            if timezone
            else "By hand: every clinic's digest for the week before as_of"
        ),
        default_args={
            **DEFAULT_ARGS,
            "owner": "clinical",
            "retry_delay": dt.timedelta(minutes=2),
        },
        doc_md=__doc__,
        params={"as_of": None},
    )
    def weekly_digest() -> None:
        @task
        def plan(params=None, logical_date=None, run_after=None) -> list[dict]:  # type: ignore[no-untyped-def]
            from pipelines.jobs import digest_clinics
            from pipelines.settings import paths_from_env

            as_of = _as_of(timezone, params, logical_date, run_after)
            return [
                {"clinic_id": c, "as_of": as_of}
                for c in digest_clinics(paths_from_env(), clinic_ids)
            ]

        # one task per clinic, in parallel, outside the writer pool: each reads the analyst
        # snapshot and journals its deliveries beside the outbox
        @task(map_index_template="{{ task.op_kwargs['clinic_id'] }}")
        def send_clinic(clinic_id: str, as_of: str) -> dict:
            from pipelines.jobs import run_clinic_digests
            from pipelines.settings import paths_from_env

            return run_clinic_digests(paths_from_env(), dt.date.fromisoformat(as_of), clinic_id)

        # the ledger in the warehouse, in one short write; also after a clinic failed, so what
        # the others sent is recorded (the journals alone already keep a rerun from resending)
        @task(pool=WRITER_POOL, trigger_rule="all_done")
        def record_deliveries(planned: list[dict]) -> dict:
            from pipelines.jobs import record_digests
            from pipelines.settings import paths_from_env

            if not planned:
                return {"recorded": 0}
            as_of = dt.date.fromisoformat(planned[0]["as_of"])
            clinics = [p["clinic_id"] for p in planned]
            return record_digests(paths_from_env(), as_of, clinics)

        planned = plan()
        send_clinic.expand_kwargs(planned) >> record_deliveries(planned)

    return weekly_digest()


def _zone(timezone: str | None) -> dt.tzinfo:
    import zoneinfo

    return zoneinfo.ZoneInfo(timezone) if timezone else dt.UTC


def _as_of(timezone: str | None, params, logical_date, run_after) -> str:  # type: ignore[no-untyped-def]
    """The run date: conf `as_of`, else the run's own Monday in the clinics' timezone (never
    the UTC date)."""
    as_of_text = (params or {}).get("as_of")
    if as_of_text:
        return dt.date.fromisoformat(as_of_text).isoformat()
    when = logical_date or run_after or dt.datetime.now(dt.UTC)
    return when.astimezone(_zone(timezone)).date().isoformat()


def _register() -> None:
    from pipelines.settings import paths_from_env

    globals()["weekly_digest"] = build_digest_dag("weekly_digest", None, None)
    for tz, clinics in _clinics_by_timezone(paths_from_env().config_dir).items():
        dag_id = f"weekly_digest_{timezone_slug(tz)}"
        globals()[dag_id] = build_digest_dag(dag_id, tz, clinics)


_register()
