"""Where things live. One root (ALLIANCE_WATCH_HOME) with conventional sub-folders, each
overridable by its own environment variable. Read at call time, never at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import AllianceWatchError


@dataclass(frozen=True)
class Paths:
    home: Path
    config_dir: Path  # holds clinics/<clinic_id>.yaml
    landing: Path  # landing/<clinic_id>/ files from clinics
    inbox: Path  # inbox/<clinic_id>.ready markers
    warehouse: Path  # the live DuckDB file (single writer)
    snapshot: Path  # the read-only analyst snapshot
    outbox: Path  # rendered digests
    data_docs: Path  # GX Data Docs site
    stage: Path  # staged Parquet between prepare and load

    def ensure(self) -> Paths:
        for p in (self.landing, self.inbox, self.outbox, self.data_docs, self.stage):
            p.mkdir(parents=True, exist_ok=True)
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        return self


def paths_from_env(env: dict[str, str] | None = None) -> Paths:
    e = os.environ if env is None else env
    home = Path(e.get("ALLIANCE_WATCH_HOME", "./demo")).resolve()

    def get(name: str, default: Path) -> Path:
        value = e.get(f"ALLIANCE_WATCH_{name}")
        return Path(value).resolve() if value else default

    return Paths(
        home=home,
        config_dir=get("CONFIG_DIR", home / "config"),
        landing=get("LANDING", home / "landing"),
        inbox=get("INBOX", home / "inbox"),
        warehouse=get("WAREHOUSE", home / "warehouse" / "alliance.duckdb"),
        snapshot=get("SNAPSHOT", home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"),
        outbox=get("OUTBOX", home / "outbox"),
        data_docs=get("DATA_DOCS", home / "data_docs"),
        stage=get("STAGE", home / "stage"),
    )


def run_stage_dir(paths: Paths, clinic_id: str, run_id: str) -> Path:
    """Where one ingest run of a clinic stages its Parquet (removed when the run ends)."""
    return paths.stage / clinic_id / str(run_id).replace(":", "_").replace("+", "_")


# An ingest run prepares a clinic's files below this size together in one task (its worker
# processes share them) and gives each larger file a task of its own (docs/operations.md).
DEFAULT_PREPARE_FANOUT_BYTES = 16 * 2**20


def prepare_fanout_bytes(env: dict[str, str] | None = None) -> int:
    """`ALLIANCE_WATCH_PREPARE_FANOUT_BYTES` (default 16 MB): the size from which a delivered
    file is prepared in an Airflow task of its own rather than with the clinic's other files.
    A positive whole number of bytes; anything else is refused by name."""
    e = os.environ if env is None else env
    raw = e.get("ALLIANCE_WATCH_PREPARE_FANOUT_BYTES", "").strip()
    if not raw:
        return DEFAULT_PREPARE_FANOUT_BYTES
    if not raw.isdigit() or int(raw) <= 0:
        raise AllianceWatchError(
            f"ALLIANCE_WATCH_PREPARE_FANOUT_BYTES must be a positive number of bytes, not {raw!r}"
        )
    return int(raw)
