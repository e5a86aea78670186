"""The ingest functions the Airflow tasks and `alliance-watch ingest` call.

`discover` and `load` need the warehouse (the single writer); preparing does not, so the DAG
prepares many files in parallel. Results travel through XCom as JSON-able dicts; each staged
file crosses whole (`StagedFile.to_item` / `from_item`: its key check and clients included), so
the tasks load through the same code as the command line (`ingest_clinics`).

The steps live beside this module: `discovery` (new files), `prepare` (a file's parts, `stage`,
`quarantine`), `assemble` (a file from its parts), `pool` (worker processes), `orchestrate`
(the command line's run), `batches` (files per task) and `data_docs`.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import duckdb

from pipelines.config import ClinicConfig
from pipelines.ingest.data_docs import publish_data_docs
from pipelines.ingest.discovery import Delivery, discover, judge_fingerprint
from pipelines.ingest.orchestrate import ingest_all, ingest_clinic, ingest_clinics, load_one
from pipelines.ingest.pool import prepared_in_order
from pipelines.ingest.prepare import prepare_file
from pipelines.registry import ALLIANCE_INSTRUMENTS
from pipelines.warehouse import (
    FileResult,
    StagedFile,
    backend,
    clients_of_earlier_load,
    known_hashes,
    open_warehouse,
    publish_snapshot,
    record_clinic_settings,
)

__all__ = [
    "discover_from_snapshot",
    "discover_new",
    "ingest_all",
    "ingest_clinic",
    "ingest_clinics",
    "load_batches",
    "load_prepared",
    "prepare_item",
    "prepare_items",
    "publish_data_docs",
]

log = logging.getLogger(__name__)


def _config_for(config_dir: Path, clinic_id: str) -> ClinicConfig:
    from pipelines.config import config_path, load_clinic_config

    return load_clinic_config(config_path(config_dir, clinic_id))


def discover_new(
    clinic_id: str, config_dir: Path, landing: Path, warehouse: Path, names: list[str] | None = None
) -> list[dict[str, object]]:
    """New deliveries of one clinic as JSON-able dicts (needs the writer slot: reads the ledger)."""
    cfg = _config_for(config_dir, clinic_id)
    with open_warehouse(warehouse) as conn:
        record_clinic_settings(conn, clinic_id, cfg.timezone, cfg.cadence_days)
        known = known_hashes(conn, clinic_id, judge_fingerprint(cfg))
    return _discovered_items(*discover(cfg, landing, known, names))


def prepare_item(
    item: dict[str, object],
    clinic_id: str,
    config_dir: Path,
    stage_dir: Path,
    docs_dir: Path | None,
) -> dict[str, object]:
    """Prepare one discovered item (no warehouse access: safe to run many in parallel)."""
    if item["kind"] == "rejected":
        return {"result": item["result"], "valid_path": None, "quarantine_path": None}
    cfg = _config_for(config_dir, clinic_id)
    d = _delivery_of(item, clinic_id)
    return prepare_file(d, cfg, stage_dir, docs_dir, build_docs=False).to_item()


def discover_from_snapshot(
    clinic_id: str,
    config_dir: Path,
    landing: Path,
    warehouse: Path,
    snapshot: Path,
    names: list[str] | None = None,
) -> list[dict[str, object]]:
    """`discover_new` without the writer slot: the ledger is read from the analyst snapshot,
    which every load and every detection republishes (or the live warehouse, where analysts
    read it: `Backend.read_published`).

    The snapshot can only lag the ledger (a load that died after its commit, before it
    republished): a file it does not show yet is prepared again and `load_staged`, which looks
    in the live ledger inside the load's transaction, loads nothing twice. No snapshot, or one
    that cannot be read: the live warehouse read-only; no warehouse at all: every file is new.
    The clinic's settings (`clinic_settings`) are recorded by the load."""
    cfg = _config_for(config_dir, clinic_id)
    fingerprint = judge_fingerprint(cfg)
    known = backend(warehouse).read_published(
        snapshot, lambda conn: known_hashes(conn, clinic_id, fingerprint)
    )
    return _discovered_items(*discover(cfg, landing, known or {}, names))


def _discovered_items(found: list[Delivery], rejected: list[FileResult]) -> list[dict[str, object]]:
    items: list[dict[str, object]] = [
        {
            "kind": "delivery",
            "path": str(d.path),
            "dataset": d.dataset,
            "sha256": d.sha256,
            "bytes": d.bytes,
            "stamp": d.stamp,
        }
        for d in found
    ]
    return items + [{"kind": "rejected", "result": asdict(r)} for r in rejected]


def _delivery_of(item: dict[str, object], clinic_id: str) -> Delivery:
    dataset = item["dataset"]
    return Delivery(
        clinic_id,
        Path(str(item["path"])),
        str(dataset) if dataset else None,
        str(item["sha256"]),
        int(str(item["bytes"])),
        str(item["stamp"]) if item.get("stamp") else None,
    )


def prepare_items(
    items: list[dict[str, object]],
    clinic_id: str,
    config_dir: Path,
    stage_dir: Path,
    docs_dir: Path | None,
) -> list[dict[str, object]]:
    """Prepare several discovered items in one call (one Airflow task): two or more files are
    prepared side by side in worker processes (`prepare_workers`), as `alliance-watch ingest`
    does. Returns one staged item per item, in the order given, each keeping the input's
    other keys (such as its place in discovery order)."""
    cfg = _config_for(config_dir, clinic_id)
    out: list[dict[str, object] | None] = [None] * len(items)
    jobs: list[tuple[Delivery, ClinicConfig]] = []
    where: list[int] = []
    for i, item in enumerate(items):
        extra = {k: v for k, v in item.items() if k not in _ITEM_KEYS}
        if item["kind"] == "rejected":
            staged_nothing = {"valid_path": None, "quarantine_path": None}
            out[i] = {**extra, "result": item["result"], **staged_nothing}
            continue
        jobs.append((_delivery_of(item, clinic_id), cfg))
        where.append(i)
    if jobs:
        stage_dir.mkdir(parents=True, exist_ok=True)
        # a daemonic process (a Celery prefork child: Airflow's task forks from it) may not
        # start worker processes; there the files are prepared one after the other, and the
        # parallelism is Celery's own (concurrency x workers)
        daemonic = multiprocessing.current_process().daemon
        if daemonic and len(jobs) > 1:
            log.info("preparing %d files in this process (a daemonic worker process)", len(jobs))
        prepared = prepared_in_order(jobs, stage_dir, docs_dir, None, 1 if daemonic else None)
        try:
            for i, staged in zip(where, prepared, strict=True):
                extra = {k: v for k, v in items[i].items() if k not in _ITEM_KEYS}
                out[i] = {**extra, **staged.to_item()}
        finally:
            prepared.close()
    return [o for o in out if o is not None]


_ITEM_KEYS = frozenset({"kind", "path", "dataset", "sha256", "bytes", "stamp", "result"})


def load_prepared(
    staged: list[dict[str, object]],
    warehouse: Path,
    snapshot: Path | None = None,
    settings_of: ClinicConfig | None = None,
) -> dict[str, object]:
    """Load prepared files one transaction each; return the warehouse asset event's extra.
    With `snapshot`, republish the analyst snapshot when anything was loaded. With
    `settings_of`, first record that clinic's settings (when `discover` ran without the
    writer slot)."""
    results: list[FileResult] = []
    with open_warehouse(warehouse) as conn:
        if settings_of is not None:
            c = settings_of
            record_clinic_settings(conn, c.clinic_id, c.timezone, c.cadence_days)
        for s in staged:
            r = load_one(conn, StagedFile.from_item(s))
            if r.status == "already_loaded":
                # a retry of this task after the file committed: its clients still go to
                # detection, which may never have heard of them
                r.clients_touched = clients_of_earlier_load(conn, r)
            results.append(r)
        out_of_order = [sessions_dated_out_of_order(conn, r) for r in results]
    if snapshot is not None and results:
        publish_snapshot(warehouse, snapshot)
    clinics = sorted({r.clinic_id for r in results})
    return {
        "clinic": clinics[0] if len(clinics) == 1 else clinics,
        "files": [
            {
                "file_name": r.file_name,
                "status": r.status,
                "rows_in": r.rows_in,
                "rows_loaded": r.rows_loaded,
                "rows_quarantined": r.rows_quarantined,
                "rows_duplicate": r.rows_duplicate,
                "rows_filtered": r.rows_filtered,
                "filtered_reasons": list(r.filtered_reasons),
                "rejudged": r.rejudged,
                "rows_released": r.rows_released,
                "top_reasons": list(r.top_reasons),
                "error": r.error,
                "sessions_out_of_order": late,
            }
            for r, late in zip(results, out_of_order, strict=True)
        ],
        "rows": sum(r.rows_loaded for r in results),
        "clients": sorted({(r.clinic_id, c) for r in results for c in r.clients_touched}),
    }


# The alliance sessions detection leaves out (sql/detect/dated_out_of_order.sql has the rule and
# why), counted at load time for the series a file delivered to, so the data team's receipt says
# so at once rather than in the next weekly summary.
_OUT_OF_ORDER_SQL = """
with touched as (
    select distinct clinic_id, client_id, coalesce(episode_id, '') as episode_id, instrument
    from measurements
    where load_id = ? and list_contains(?, instrument)
),

series as (
    select
        m.clinic_id,
        m.client_id,
        coalesce(m.episode_id, '') as episode_id,
        m.instrument,
        m.session_number,
        m.session_date
    from measurements as m
    semi join touched as t
        on m.clinic_id = t.clinic_id
        and m.client_id = t.client_id
        and coalesce(m.episode_id, '') = t.episode_id
        and m.instrument = t.instrument
)

select count(*)
from (
    select
        session_date > min(session_date) over (
            partition by clinic_id, client_id, episode_id, instrument
            order by session_number
            range between 1 following and unbounded following
        ) as is_late
    from series
)
where is_late
"""


def sessions_dated_out_of_order(conn: duckdb.DuckDBPyConnection, r: FileResult) -> int:
    """Alliance sessions, in the series this file's load delivered to, dated after a
    higher-numbered session of the same series: loaded, but left out of detection until
    corrected. 0 for a file that loaded nothing."""
    if (
        r.load_id is None
        or not r.rows_loaded
        or r.status not in ("loaded", "loaded_with_quarantine")
    ):
        return 0
    row = conn.execute(_OUT_OF_ORDER_SQL, [r.load_id, list(ALLIANCE_INSTRUMENTS)]).fetchone()
    return int(row[0]) if row else 0


def load_batches(
    batches: Sequence[Sequence[dict[str, object]]],
    clinic_id: str,
    config_dir: Path,
    warehouse: Path,
    snapshot: Path | None = None,
) -> dict[str, object]:
    """The `load` of an ingest run whose files were prepared in batches
    (`prepare_batches.plan`): the clinic's settings, then every file in discovery order, one
    transaction each (`load_prepared`)."""
    from pipelines.ingest.batches import in_discovery_order

    cfg = _config_for(config_dir, clinic_id)
    return load_prepared(in_discovery_order(batches), warehouse, snapshot, settings_of=cfg)
