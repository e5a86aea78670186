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
        @task(pool=WRITER_POOL)
        def send_digests(params=None, logical_date=None, run_after=None) -> dict:  # type: ignore[no-untyped-def]
            from pipelines.jobs import run_digests
            from pipelines.settings import paths_from_env

            as_of_text = (params or {}).get("as_of")
            if as_of_text:
                as_of = dt.date.fromisoformat(as_of_text)
            else:
                # the run's own Monday in the clinics' timezone (never the UTC date)
                when = logical_date or run_after or dt.datetime.now(dt.UTC)
                as_of = when.astimezone(_zone(timezone)).date()
            return run_digests(paths_from_env(), as_of, clinic_ids)

        send_digests()

    return weekly_digest()


def _zone(timezone: str | None) -> dt.tzinfo:
    import zoneinfo

    return zoneinfo.ZoneInfo(timezone) if timezone else dt.UTC


def _register() -> None:
    from pipelines.settings import paths_from_env

    globals()["weekly_digest"] = build_digest_dag("weekly_digest", None, None)
    for tz, clinics in _clinics_by_timezone(paths_from_env().config_dir).items():
        dag_id = f"weekly_digest_{timezone_slug(tz)}"
        globals()[dag_id] = build_digest_dag(dag_id, tz, clinics)


_register()
