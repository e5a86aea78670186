"""Ingest: discover new files, prepare each (read, guard, validate, split, stage), load each once.

The same functions serve the CLI (`alliance-watch ingest`) and the Airflow tasks:
`discover` and `load` need the warehouse (the single writer); `prepare_file` does not, so the
DAG runs it for many files in parallel.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import readers
from pipelines.config import ClinicConfig, load_clinic_configs
from pipelines.errors import AllianceWatchError, ConfigError, FileRejected
from pipelines.warehouse import FileResult, StagedFile, known_hashes, load_staged, open_warehouse

log = logging.getLogger(__name__)
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Delivery:
    """A file found in a clinic's landing folder."""

    clinic_id: str
    path: Path
    dataset: str | None  # None: matches neither pattern
    sha256: str
    bytes: int


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_of(name: str, cfg: ClinicConfig) -> str | None:
    if fnmatch.fnmatch(name, cfg.measures_pattern):
        return "measures"
    if fnmatch.fnmatch(name, cfg.appointments_pattern):
        return "appointments"
    return None


def list_landing(cfg: ClinicConfig, landing: Path) -> list[Path]:
    """Every entry in the clinic's landing folder, sorted; hidden files are ignored."""
    folder = landing / cfg.clinic_id
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def discover(
    cfg: ClinicConfig, landing: Path, known: dict[str, list[str]], names: list[str] | None = None
) -> tuple[list[Delivery], list[FileResult]]:
    """New deliveries (not yet in the ledger under the same name and content) and results for
    entries rejected outright (symlinks, folders: never followed)."""
    found: list[Delivery] = []
    rejected: list[FileResult] = []
    for p in list_landing(cfg, landing):
        if names is not None and p.name not in names:
            continue
        if p.is_symlink() or not p.is_file():
            kind = "symlink" if p.is_symlink() else "folder or special file"
            sha = hashlib.sha256(f"not-a-file:{p.name}".encode()).hexdigest()
            if p.name in known.get(sha, []):
                continue
            rejected.append(
                FileResult(
                    clinic_id=cfg.clinic_id,
                    file_name=p.name,
                    sha256=sha,
                    dataset=None,
                    status="rejected",
                    error=f"not_a_regular_file: {kind}; never followed, deliver plain files",
                )
            )
            continue
        sha = sha256_of(p)
        if p.name in known.get(sha, []):
            continue  # this exact delivery is already in the ledger
        found.append(Delivery(cfg.clinic_id, p, dataset_of(p.name, cfg), sha, p.stat().st_size))
    return found, rejected


def _reasons_per_row(issues: pd.DataFrame) -> pd.Series:
    """row -> sorted unique list of reasons."""
    if issues.empty:
        return pd.Series(dtype="object")
    return issues.groupby("row")["reason"].agg(lambda s: sorted(set(s)))


def _top_reasons(issues: pd.DataFrame, k: int = 5) -> list[str]:
    if issues.empty:
        return []
    codes = issues.drop_duplicates(["row", "reason"])["reason"]
    return [f"{reason} ({n})" for reason, n in Counter(codes).most_common(k)]


def prepare_file(
    delivery: Delivery, cfg: ClinicConfig, stage_dir: Path, docs_dir: Path | None = None
) -> StagedFile:
    """Read, guard, validate and split one file; stage valid and quarantined rows as Parquet.

    Never raises for bad input: a file-level problem becomes a `rejected` result with a reason.
    """
    from pipelines import deid, validate

    base = FileResult(
        clinic_id=cfg.clinic_id,
        file_name=delivery.path.name,
        sha256=delivery.sha256,
        dataset=delivery.dataset,
        status="rejected",
        bytes=delivery.bytes,
    )
    if delivery.dataset is None:
        base.error = (
            f"unknown_file: name matches neither {cfg.measures_pattern!r} nor "
            f"{cfg.appointments_pattern!r}"
        )
        return StagedFile(result=base)
    try:
        raw = readers.read_raw(delivery.path, delivery.dataset, cfg)
        deid.check_header(raw.header, delivery.dataset)
    except FileRejected as e:
        base.error = str(e)
        return StagedFile(result=base)
    base.ignored_columns = list(raw.ignored_columns)
    n = raw.table.num_rows
    id_issues, redact = deid.scan_values(raw.table, cfg)
    typed, cast_issues = readers.canonicalize(raw, cfg)
    typed = typed.set_column(
        typed.schema.get_field_index("source_file"),
        "source_file",
        pa.array([delivery.path.name] * n, pa.string()),
    )
    typed_for_gx = _blank_cells(typed, redact)
    gx_issues, docs_path = validate.validate(
        typed_for_gx, delivery.dataset, cfg, docs_dir=docs_dir, file_name=delivery.path.name
    )
    base.data_docs_path = str(docs_path) if docs_path else None
    frames = [f for f in (id_issues, cast_issues, gx_issues) if f is not None and not f.empty]
    issues = pd.concat(frames, ignore_index=True) if frames else readers.empty_issues()
    dup_rows = issues.loc[issues["reason"].str.startswith("duplicate_row"), "row"].unique()
    bad = issues.loc[~issues["row"].isin(dup_rows)]
    per_row = _reasons_per_row(bad)
    quarantined = per_row.index.to_numpy(dtype="int64")
    keep_mask = np.ones(n, dtype=bool)
    keep_mask[quarantined] = False
    keep_mask[dup_rows.astype("int64")] = False
    keep = np.flatnonzero(keep_mask)
    stage_dir.mkdir(parents=True, exist_ok=True)
    staged = StagedFile(result=base)
    stem = f"{cfg.clinic_id}-{delivery.sha256[:16]}"
    if len(keep):
        staged.valid_path = stage_dir / f"{stem}.valid.parquet"
        pq.write_table(typed.take(pa.array(keep)), staged.valid_path)
    if len(quarantined):
        staged.quarantine_path = stage_dir / f"{stem}.quarantine.parquet"
        _stage_quarantine(raw.table, quarantined, per_row, redact, staged.quarantine_path)
    base.rows_in = n
    base.rows_loaded = len(keep)
    base.rows_quarantined = len(quarantined)
    base.rows_duplicate = len(dup_rows)
    base.top_reasons = _top_reasons(issues)
    if len(keep) == 0 and len(quarantined) > 0:
        base.status = "rejected"
        base.error = "no_valid_rows: every row was quarantined; see quarantined_rows"
    else:
        base.status = "loaded_with_quarantine" if len(quarantined) else "loaded"
    return staged


def _blank_cells(typed: pa.Table, redact: pd.DataFrame | None) -> pa.Table:
    """Null out identifying cells so they never reach GX or its Data Docs."""
    if redact is None or redact.empty:
        return typed
    for col, rows in redact.groupby("column")["row"]:
        if col not in typed.column_names:
            continue
        mask = pd.Series(False, index=range(typed.num_rows))
        mask.iloc[rows.to_numpy()] = True
        arr = typed.column(col)
        nulls = pa.nulls(typed.num_rows, arr.type)
        typed = typed.set_column(
            typed.schema.get_field_index(col),
            col,
            pc.if_else(pa.array(mask.to_numpy()), nulls, arr),
        )
    return typed


def _stage_quarantine(
    raw: pa.Table,
    rows: object,
    per_row: pd.Series,
    redact: pd.DataFrame | None,
    out: Path,
) -> None:
    idx = pa.array(rows, pa.int64())
    frame = raw.take(idx).to_pandas()
    lines = frame.pop("source_line").astype("int64")
    if redact is not None and not redact.empty:
        pos = {r: i for i, r in enumerate(per_row.index.tolist())}
        for col, group in redact.groupby("column"):
            hit = [pos[r] for r in group["row"].tolist() if r in pos]
            if col in frame.columns and hit:
                frame.iloc[hit, frame.columns.get_loc(col)] = REDACTED
    frame = frame.replace("", None)
    records = frame.to_json(orient="records", lines=True, force_ascii=False).splitlines()
    table = pa.table(
        {
            "line_number": pa.array(lines.to_numpy(), pa.int64()),
            "reasons": pa.array(per_row.tolist(), pa.list_(pa.string())),
            "row_data": pa.array(records, pa.string()),
        }
    )
    pq.write_table(table, out)


ProgressFn = Callable[[str], None]


def ingest_clinic(
    cfg: ClinicConfig,
    landing: Path,
    warehouse: Path,
    docs_dir: Path | None = None,
    names: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> list[FileResult]:
    """Ingest every new file of one clinic; each file is loaded in its own transaction."""
    with open_warehouse(warehouse) as conn:
        known = known_hashes(conn, cfg.clinic_id)
    deliveries, rejected = discover(cfg, landing, known, names)
    results: list[FileResult] = []
    with tempfile.TemporaryDirectory(prefix="aw-stage-") as tmp:
        staged_all = list(rejected_staged(rejected))
        for i, d in enumerate(deliveries, 1):
            if progress:
                progress(f"[{cfg.clinic_id}] {i}/{len(deliveries)} preparing {d.path.name}")
            staged_all.append(prepare_file(d, cfg, Path(tmp), docs_dir))
        with open_warehouse(warehouse) as conn:
            for s in staged_all:
                results.append(load_staged(conn, s))
    for r in results:
        log.info(
            "clinic=%s file=%s status=%s rows_in=%d loaded=%d quarantined=%d duplicate=%d",
            r.clinic_id,
            r.file_name,
            r.status,
            r.rows_in,
            r.rows_loaded,
            r.rows_quarantined,
            r.rows_duplicate,
        )
    return [r for r in results if r.status != "already_loaded"]


def rejected_staged(results: list[FileResult]) -> list[StagedFile]:
    return [StagedFile(result=r) for r in results]


def ingest_all(
    config_dir: Path,
    landing: Path,
    warehouse: Path,
    docs_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> list[FileResult]:
    """Ingest every configured clinic. A clinic whose config is invalid is skipped (its error is
    logged and returned by `load_clinic_configs`); the others go on."""
    configs, errors = load_clinic_configs(config_dir)
    for e in errors:
        log.error("clinic config error: %s", e)
    results: list[FileResult] = []
    for cfg in configs.values():
        results.extend(ingest_clinic(cfg, landing, warehouse, docs_dir, progress=progress))
    return results


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-dir", type=Path, required=True, help="folder with clinics/<id>.yaml")
    p.add_argument("--landing", type=Path, required=True, help="folder with one folder per clinic")
    p.add_argument("--warehouse", type=Path, required=True, help="DuckDB warehouse file")
    p.add_argument(
        "--docs-dir", type=Path, default=None, help="where to build the GX Data Docs site"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def format_table(results: list[FileResult]) -> str:
    head = ("clinic", "file", "status", "in", "loaded", "quar.", "dup.", "reasons")
    rows = [
        (
            r.clinic_id,
            r.file_name,
            r.status,
            str(r.rows_in),
            str(r.rows_loaded),
            str(r.rows_quarantined),
            str(r.rows_duplicate),
            r.error or "; ".join(r.top_reasons[:3]),
        )
        for r in results
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    widths[-1] = len(head[-1])

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([fmt(head), *(fmt(r) for r in rows)])


def run(args: argparse.Namespace) -> int:
    if not args.config_dir.is_dir():
        raise ConfigError(str(args.config_dir), "--config-dir", "is not a folder")
    if not args.landing.is_dir():
        raise AllianceWatchError(f"--landing {args.landing}: is not a folder")
    configs, errors = load_clinic_configs(args.config_dir)
    for e in errors:
        print(f"config error (clinic skipped): {e}", file=sys.stderr)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    results: list[FileResult] = []
    for cfg in configs.values():
        results.extend(
            ingest_clinic(cfg, args.landing, args.warehouse, args.docs_dir, progress=progress)
        )
    if results:
        print(format_table(results))
    else:
        print("no new files")
    return 0


# ----------------------------------------------------------------------------- task-facing API
# JSON-friendly wrappers the Airflow tasks call (results travel through XCom as dicts).


def _config_for(config_dir: Path, clinic_id: str) -> ClinicConfig:
    from pipelines.config import load_clinic_config

    return load_clinic_config(config_dir / "clinics" / f"{clinic_id}.yaml")


def discover_new(
    clinic_id: str, config_dir: Path, landing: Path, warehouse: Path, names: list[str] | None = None
) -> list[dict[str, object]]:
    """New deliveries of one clinic as JSON-able dicts (needs the writer slot: reads the ledger)."""
    cfg = _config_for(config_dir, clinic_id)
    with open_warehouse(warehouse) as conn:
        known = known_hashes(conn, clinic_id)
    found, rejected = discover(cfg, landing, known, names)
    items: list[dict[str, object]] = [
        {
            "kind": "delivery",
            "path": str(d.path),
            "dataset": d.dataset,
            "sha256": d.sha256,
            "bytes": d.bytes,
        }
        for d in found
    ]
    items += [{"kind": "rejected", "result": asdict(r)} for r in rejected]
    return items


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
    dataset = item["dataset"]
    d = Delivery(
        clinic_id,
        Path(str(item["path"])),
        str(dataset) if dataset else None,
        str(item["sha256"]),
        int(str(item["bytes"])),
    )
    s = prepare_file(d, cfg, stage_dir, docs_dir)
    return {
        "result": asdict(s.result),
        "valid_path": str(s.valid_path) if s.valid_path else None,
        "quarantine_path": str(s.quarantine_path) if s.quarantine_path else None,
    }


def load_prepared(staged: list[dict[str, object]], warehouse: Path) -> dict[str, object]:
    """Load prepared files one transaction each; return the warehouse asset event's extra."""
    results: list[FileResult] = []
    with open_warehouse(warehouse) as conn:
        for s in staged:
            sf = StagedFile(
                result=FileResult(**s["result"]),  # type: ignore[arg-type]
                valid_path=Path(str(s["valid_path"])) if s["valid_path"] else None,
                quarantine_path=Path(str(s["quarantine_path"])) if s["quarantine_path"] else None,
            )
            results.append(load_staged(conn, sf))
            for p in (sf.valid_path, sf.quarantine_path):
                if p is not None:
                    p.unlink(missing_ok=True)
    results = [r for r in results if r.status != "already_loaded"]
    clinics = sorted({r.clinic_id for r in results})
    return {
        "clinic": clinics[0] if len(clinics) == 1 else clinics,
        "files": [
            {
                "file_name": r.file_name,
                "status": r.status,
                "rows_loaded": r.rows_loaded,
                "rows_quarantined": r.rows_quarantined,
                "error": r.error,
            }
            for r in results
        ],
        "rows": sum(r.rows_loaded for r in results),
        "clients": sorted({(r.clinic_id, c) for r in results for c in r.clients_touched}),
    }
