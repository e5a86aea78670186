"""Job-level steps shared by the Airflow tasks and the CLI: each opens the warehouse once,
does one thing, closes it, and returns a small JSON-able summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.settings import Paths
from pipelines.warehouse import open_warehouse, publish_snapshot


def _clinic_params(paths: Paths) -> dict[str, Any]:
    from pipelines.config import load_clinic_configs
    from pipelines.detect.ruptures import params_from_configs

    configs, _errors = (
        load_clinic_configs(paths.config_dir) if paths.config_dir.is_dir() else ({}, [])
    )
    return params_from_configs(configs)


def _summary_dict(summary: Any, paths: Paths) -> dict[str, Any]:
    out = summary.as_dict() if hasattr(summary, "as_dict") else dict(vars(summary))
    out["snapshot"] = str(paths.snapshot)
    return out


def run_detection(paths: Paths, clients: list[tuple[str, str]] | None) -> dict[str, Any]:
    """Detect for the given clients (or all), then publish the analyst snapshot. The given
    clients come with every client of their clinics whose open episode the clinic's newer data
    shows to have ended (`detect.with_open_episodes`). The pending-detection ledger is left as
    it is: `drain_detection` is what the DAG runs."""
    from pipelines.detect.ruptures import detect, with_open_episodes

    clinic_params = _clinic_params(paths)
    with open_warehouse(paths.warehouse) as conn:
        recompute = None if clients is None else with_open_episodes(conn, clients, clinic_params)
        summary = detect(conn, clients=recompute, clinic_params=clinic_params)
    publish_snapshot(paths.warehouse, paths.snapshot)
    out = _summary_dict(summary, paths)
    out["clients_requested"] = "all" if clients is None else len(clients)
    out["clients_with_open_episodes"] = (
        0 if clients is None or recompute is None else len(recompute) - len(set(clients))
    )
    return out


def drain_detection(paths: Paths, full: bool = False) -> dict[str, Any]:
    """Detect every client the loads queued in the pending-detection ledger (`pipelines.detect.pending`),
    whatever woke this run, plus the clients of their clinics whose open episode has ended
    (`detect.with_open_episodes`); with `full`, every client. Then publish the analyst snapshot
    and, last, delete the ledger rows this run read (rows queued meanwhile stay): a crash
    anywhere before that only repeats the work, and the snapshot never misses a detection whose
    rows left the ledger.

    Nothing pending (and not `full`): returns at once with `detected` False, having detected
    and published nothing. `clients`: the pairs the ledger named (None for `full`)."""
    from pipelines.detect import pending
    from pipelines.detect.ruptures import detect, with_open_episodes

    with open_warehouse(paths.warehouse) as conn:
        queued = pending.read(conn)
        if not queued and not full:
            return {"detected": False, "clients_requested": 0, "clients": []}
        clinic_params = _clinic_params(paths)
        if full:
            recompute = None
            summary = detect(conn, clinic_params=clinic_params)
        else:
            recompute = with_open_episodes(conn, queued.clients, clinic_params)
            summary = detect(conn, clients=recompute, clinic_params=clinic_params)
    publish_snapshot(paths.warehouse, paths.snapshot)
    with open_warehouse(paths.warehouse) as conn:
        cleared = pending.clear(conn, queued)
    out = _summary_dict(summary, paths)
    out["detected"] = True
    out["clients_requested"] = "all" if full else len(queued.clients)
    out["clients_with_open_episodes"] = (
        0 if recompute is None else len(recompute) - len(queued.clients)
    )
    out["pending_rows_cleared"] = cleared
    out["clients"] = None if full else [list(c) for c in queued.clients]
    return out


def run_digests(
    paths: Paths, as_of: dt.date, clinic_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Render and send the digests due on `as_of` (SMTP settings from the environment), for
    every clinic or only `clinic_ids`, all in this call (clinics in parallel processes), from
    the analyst snapshot; then record the deliveries in the warehouse ledger."""
    from pipelines.deliver.digest import run_weekly_digest
    from pipelines.deliver.mailer import smtp_settings_from_env

    source = digest_source(paths)
    if source is None:
        return {"as_of": as_of.isoformat(), "skipped": "no analyst snapshot yet"}
    summary = run_weekly_digest(
        paths.warehouse,
        paths.config_dir,
        as_of,
        paths.outbox,
        smtp_settings_from_env(),
        clinic_ids=clinic_ids,
        source=source,
    )
    return summary.as_dict()


def digest_source(paths: Paths) -> Path | None:
    """What digests are rendered from: what analysts read (`Backend.reader`, read-only; no
    writer slot); None when there is nothing to read yet (nothing was ever detected, so there is
    nothing to report)."""
    from pipelines.warehouse import backend

    if backend(paths.warehouse).readable(paths.snapshot):
        return paths.snapshot
    return None


def digest_clinics(paths: Paths, clinic_ids: Sequence[str] | None = None) -> list[str]:
    """The clinics whose digests are due: every valid clinic config, or those of `clinic_ids`
    (a clinic with an invalid config is left out; its ingest DAG shows the error)."""
    from pipelines.config import load_clinic_configs

    configs, _errors = (
        load_clinic_configs(paths.config_dir) if paths.config_dir.is_dir() else ({}, [])
    )
    return sorted(c for c in configs if clinic_ids is None or c in clinic_ids)


def run_clinic_digests(paths: Paths, as_of: dt.date, clinic_id: str) -> dict[str, Any]:
    """One clinic's digests due on `as_of`, rendered from the analyst snapshot (read-only, no
    writer slot) and journaled beside the outbox; `record_digests` mirrors the journal into
    the warehouse ledger afterwards. Counts only (no addresses, no client codes)."""
    from pipelines.config import load_clinic_configs
    from pipelines.deliver.digest import DigestRunSummary, Week, deliver_clinic
    from pipelines.deliver.mailer import smtp_settings_from_env

    week = Week.before(as_of)
    source = digest_source(paths)
    if source is None:
        return {"as_of": as_of.isoformat(), "skipped": "no analyst snapshot yet"}
    configs, _errors = load_clinic_configs(paths.config_dir)
    cfg = configs[clinic_id]
    summary = DigestRunSummary(as_of=as_of, week_start=week.start)
    summary.deliveries = deliver_clinic(source, cfg, week, paths.outbox, smtp_settings_from_env())
    return summary.as_dict()


def record_digests(
    paths: Paths, as_of: dt.date, clinic_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Mirror the week's delivery journals into the warehouse ledger (`digest_deliveries`): the
    one short step of a digest run that needs the writer."""
    from pipelines.deliver.digest import Week, record_deliveries

    week = Week.before(as_of)
    n = record_deliveries(paths.warehouse, paths.outbox, week.start, clinic_ids)
    return {"as_of": as_of.isoformat(), "recorded": n}
