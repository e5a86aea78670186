"""Job-level steps shared by the Airflow tasks and the CLI: each opens the warehouse once,
does one thing, closes it, and returns a small JSON-able summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from pipelines.settings import Paths
from pipelines.warehouse import open_warehouse, publish_snapshot


def clients_from_events(extras: Iterable[dict[str, Any] | None]) -> list[tuple[str, str]] | None:
    """The (clinic_id, client_id) pairs named by warehouse asset events; None = everyone
    (no event, e.g. a manual run)."""
    pairs: set[tuple[str, str]] = set()
    any_event = False
    for extra in extras:
        if not extra:
            continue
        any_event = True
        for pair in extra.get("clients", []):
            clinic_id, client_id = pair
            pairs.add((str(clinic_id), str(client_id)))
    return sorted(pairs) if any_event else None


def run_detection(paths: Paths, clients: list[tuple[str, str]] | None) -> dict[str, Any]:
    """Detect for the given clients (or all), then publish the analyst snapshot. The given
    clients come with every client of their clinics whose open episode the clinic's newer data
    shows to have ended (`detect.with_open_episodes`)."""
    from pipelines.config import load_clinic_configs
    from pipelines.detect import detect, params_from_configs, with_open_episodes

    configs, _errors = (
        load_clinic_configs(paths.config_dir) if paths.config_dir.is_dir() else ({}, [])
    )
    clinic_params = params_from_configs(configs)
    with open_warehouse(paths.warehouse) as conn:
        recompute = None if clients is None else with_open_episodes(conn, clients, clinic_params)
        summary = detect(conn, clients=recompute, clinic_params=clinic_params)
    publish_snapshot(paths.warehouse, paths.snapshot)
    out = summary.as_dict() if hasattr(summary, "as_dict") else dict(vars(summary))
    out["snapshot"] = str(paths.snapshot)
    out["clients_requested"] = "all" if clients is None else len(clients)
    out["clients_with_open_episodes"] = (
        0 if clients is None or recompute is None else len(recompute) - len(set(clients))
    )
    return out


def run_digests(
    paths: Paths, as_of: dt.date, clinic_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Render and send the digests due on `as_of` (SMTP settings from the environment), for
    every clinic or only `clinic_ids` (one DAG per timezone passes its clinics)."""
    from pipelines.digest import run_weekly_digest
    from pipelines.mailer import smtp_settings_from_env

    summary = run_weekly_digest(
        paths.warehouse,
        paths.config_dir,
        as_of,
        paths.outbox,
        smtp_settings_from_env(),
        clinic_ids=clinic_ids,
    )
    return summary.as_dict() if hasattr(summary, "as_dict") else dict(vars(summary))
