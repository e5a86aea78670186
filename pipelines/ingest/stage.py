"""Where a delivery's rows are staged between preparing and loading, and what one part of it
contributed (`PartOutcome`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines.config import ClinicConfig
from pipelines.ingest.discovery import Delivery, judge_fingerprint
from pipelines.warehouse import FileResult, StagedFile


@dataclass
class PartOutcome:
    """What one part of a file contributed (its rows are in the file's stage folders)."""

    rows_in: int = 0
    kept: int = 0
    quarantined: int = 0
    duplicate: int = 0
    issues: pd.DataFrame | None = None
    data_docs_path: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    error: str | None = None  # the file-level rejection this part found
    # rows not taken in (blank lines, `keep_rows`), by reason: outside rows_in
    filtered: dict[str, int] = field(default_factory=dict)
    clients: list[str] = field(default_factory=list)  # distinct clients of the valid rows
    # `keep_rows` condition -> (rows it was put to, rows it held on), for the file-level verdict
    keep_rows_checks: dict[str, tuple[int, int]] = field(default_factory=dict)


def base_result(delivery: Delivery, cfg: ClinicConfig) -> FileResult:
    """The delivery's ledger row before it is judged: rejected, with no reason yet."""
    return FileResult(
        clinic_id=cfg.clinic_id,
        file_name=delivery.path.name,
        sha256=delivery.sha256,
        dataset=delivery.dataset,
        status="rejected",
        bytes=delivery.bytes,
        config_sha=judge_fingerprint(cfg),
    )


def unknown_file(delivery: Delivery, cfg: ClinicConfig) -> StagedFile:
    """A delivery whose name matches none of the clinic's patterns: rejected, nothing staged,
    with the patterns it was held against."""
    base = base_result(delivery, cfg)
    patterns = " nor ".join(repr(p) for p, _ in cfg.file_kinds() if p)
    key = "files[].pattern" if cfg.files else "measures_pattern / appointments_pattern"
    base.error = f"unknown_file: name matches neither {patterns} (add its pattern under {key})"
    return StagedFile(result=base)


def stage_stem(delivery: Delivery, cfg: ClinicConfig) -> str:
    """A delivery's name in the stage folder: its clinic, content and file name (the same
    bytes re-delivered under another name are prepared beside the original, apart)."""
    name = hashlib.sha256(delivery.path.name.encode()).hexdigest()[:8]
    return f"{cfg.clinic_id}-{delivery.sha256[:16]}-{name}"


def stage_folders(delivery: Delivery, cfg: ClinicConfig, stage_dir: Path) -> tuple[Path, Path]:
    """The folders a file's valid and quarantined rows are staged in, one Parquet file per
    part (the loader reads each folder as one table)."""
    stem = stage_stem(delivery, cfg)
    return stage_dir / f"{stem}.valid", stage_dir / f"{stem}.quarantine"
