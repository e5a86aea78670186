"""`alliance-watch ingest`: every new file of the clinics asked for, each loaded in its own
transaction, in clinic then file-name order, while the next files are prepared in parallel."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import duckdb

from pipelines import settings
from pipelines.config import ClinicConfig, load_clinic_configs
from pipelines.ingest.data_docs import publish_data_docs
from pipelines.ingest.discovery import Delivery, discover, judge_fingerprint
from pipelines.ingest.pool import ProgressFn, prepared_in_order
from pipelines.warehouse import (
    FileResult,
    StagedFile,
    known_hashes,
    load_staged,
    open_warehouse,
    publish_snapshot,
    record_clinic_settings,
    remove_staged,
)

log = logging.getLogger(__name__)


def load_one(conn: duckdb.DuckDBPyConnection, staged: StagedFile) -> FileResult:
    """Load one staged file (its own transaction, `load_staged`), then remove what it staged
    (the stage folder stays small)."""
    result = load_staged(conn, staged)
    for path in (staged.valid_path, staged.quarantine_path):
        remove_staged(path)
    return result


def ingest_clinics(
    configs: list[ClinicConfig],
    landing: Path,
    warehouse: Path,
    docs_dir: Path | None = None,
    names: list[str] | None = None,
    progress: ProgressFn | None = None,
    snapshot: Path | None = None,
) -> list[FileResult]:
    """Ingest every new file of these clinics; each file is loaded in its own transaction, in
    clinic then file-name order (a later export of a clinic supersedes an earlier one), while
    the next files are prepared in parallel. With `snapshot`, the analyst snapshot is
    republished after the loads (when anything changed)."""
    results: list[FileResult] = []
    jobs: list[tuple[Delivery, ClinicConfig]] = []
    with tempfile.TemporaryDirectory(prefix="aw-stage-") as tmp:
        # one connection for the ledger lookups and the loads: the first parts are being
        # prepared while it loads nothing yet
        with open_warehouse(warehouse) as conn:
            tuning = settings.warehouse_settings()
            conn.execute(f"set memory_limit = '{tuning.load_memory_limit}'")
            conn.execute(f"set threads = {tuning.load_threads}")
            order: list[FileResult | None] = []  # per clinic: its rejected entries, then files
            for cfg in configs:
                record_clinic_settings(conn, cfg.clinic_id, cfg.timezone, cfg.cadence_days)
                known = known_hashes(conn, cfg.clinic_id, judge_fingerprint(cfg))
                found, bad = discover(cfg, landing, known, names)
                jobs += [(d, cfg) for d in found]
                order += [*bad, *([None] * len(found))]
            prepared = prepared_in_order(jobs, Path(tmp), docs_dir, progress)
            try:
                for entry in order:
                    staged = StagedFile(result=entry) if entry else next(prepared)
                    results.append(load_one(conn, staged))
            finally:
                prepared.close()  # stops the workers when a load failed
        if jobs:
            publish_data_docs(docs_dir)
    if snapshot is not None and any(r.status != "already_loaded" for r in results):
        publish_snapshot(warehouse, snapshot)
    for r in results:
        log.info(
            "clinic=%s file=%s status=%s rows_in=%d loaded=%d quarantined=%d duplicate=%d "
            "filtered=%d",
            r.clinic_id,
            r.file_name,
            r.status,
            r.rows_in,
            r.rows_loaded,
            r.rows_quarantined,
            r.rows_duplicate,
            r.rows_filtered,
        )
    return [r for r in results if r.status != "already_loaded"]


def ingest_clinic(
    cfg: ClinicConfig,
    landing: Path,
    warehouse: Path,
    docs_dir: Path | None = None,
    names: list[str] | None = None,
    progress: ProgressFn | None = None,
    snapshot: Path | None = None,
) -> list[FileResult]:
    """Ingest every new file of one clinic (see `ingest_clinics`)."""
    return ingest_clinics([cfg], landing, warehouse, docs_dir, names, progress, snapshot)


def ingest_all(
    config_dir: Path,
    landing: Path,
    warehouse: Path,
    docs_dir: Path | None = None,
    progress: ProgressFn | None = None,
    snapshot: Path | None = None,
) -> list[FileResult]:
    """Ingest every configured clinic. A clinic whose config is invalid is skipped (its error is
    logged and returned by `load_clinic_configs`); the others go on. With `snapshot`, the
    analyst snapshot is republished after the loads."""
    configs, errors = load_clinic_configs(config_dir)
    for e in errors:
        log.error("clinic config error: %s", e)
    return ingest_clinics(
        list(configs.values()), landing, warehouse, docs_dir, progress=progress, snapshot=snapshot
    )
