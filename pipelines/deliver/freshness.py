"""Feed freshness: which clinics have not delivered within their configured cadence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pipelines.deliver.notify import StaleFeed, deliver, freshness_message, recipients_for
from pipelines.settings import Paths


def last_deliveries(warehouse: Path) -> dict[str, dt.datetime]:
    """The newest `received_at` per clinic in the ingest ledger (any status: a rejected file
    still shows the feed is alive; its problem is reported by the data-quality summary)."""
    from pipelines.warehouse import open_warehouse

    if not warehouse.exists():
        return {}
    with open_warehouse(warehouse, read_only=True) as conn:
        rows = conn.execute(
            "select clinic_id, max(received_at) from ingest_files group by clinic_id"
        ).fetchall()
    return {str(c): t for c, t in rows}


def sync_clinic_settings(warehouse: Path, configs: dict[str, Any]) -> None:
    """Write each configured clinic's timezone and cadence to `clinic_settings`, so that the
    views judge a clinic that no longer delivers (and so triggers no ingest) by its current
    config too. The analyst snapshot shows it from the next publish."""
    from pipelines.warehouse import open_warehouse, record_clinic_settings

    if not warehouse.exists() or not configs:
        return
    with open_warehouse(warehouse) as conn:
        for clinic_id, cfg in sorted(configs.items()):
            record_clinic_settings(conn, clinic_id, cfg.timezone, cfg.cadence_days)


def stale_feeds(
    cadences: dict[str, int], last: dict[str, dt.datetime], now: dt.datetime
) -> list[StaleFeed]:
    """Clinics whose newest delivery is older than `cadence_days`, or that never delivered."""
    out: list[StaleFeed] = []
    for clinic_id, cadence in sorted(cadences.items()):
        seen = last.get(clinic_id)
        if seen is None:
            out.append(StaleFeed(clinic_id, cadence, None, None))
            continue
        age_days = (now - seen).total_seconds() / 86400
        if age_days > cadence:
            out.append(StaleFeed(clinic_id, cadence, seen.isoformat(), age_days - cadence))
    return out


def check_freshness(paths: Paths, now: dt.datetime | None = None) -> dict[str, Any]:
    """Find late feeds and notify each clinic's data team; return a JSON-able summary."""
    from pipelines.config import load_clinic_configs
    from pipelines.deliver.mailer import DEFAULT_SENDER, smtp_settings_from_env

    settings = smtp_settings_from_env()
    sender = settings.sender if settings else DEFAULT_SENDER
    now = now or dt.datetime.now(dt.UTC)
    configs, errors = load_clinic_configs(paths.config_dir)
    sync_clinic_settings(paths.warehouse, configs)
    stale = stale_feeds(
        {cid: cfg.cadence_days for cid, cfg in configs.items()},
        last_deliveries(paths.warehouse),
        now,
    )
    sent: list[dict[str, Any]] = []
    for feed in stale:
        recipients = recipients_for(feed.clinic_id, paths.config_dir)
        result = deliver(freshness_message(feed, sender, recipients), recipients, settings)
        sent.append({"clinic_id": feed.clinic_id, "sent": result.ok, "error": result.error})
    strays = sorted(
        p.name
        for p in (paths.inbox.glob("*.ready") if paths.inbox.is_dir() else [])
        if p.stem not in configs
    )
    return {
        "checked": sorted(configs),
        "stale": [f.clinic_id for f in stale],
        "notices": sent,
        "config_errors": [str(e) for e in errors],
        "unknown_markers": strays,
    }
