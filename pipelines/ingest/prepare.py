"""Preparing a delivery: cut it into parts, read, guard, canonicalize and validate each part,
and stage its valid and quarantined rows as Parquet for the loader. Needs no warehouse."""

from __future__ import annotations

import errno
import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import settings
from pipelines.config import ClinicConfig
from pipelines.errors import FileRejected
from pipelines.ingest import parts as batching
from pipelines.ingest import read as readers
from pipelines.ingest.assemble import assemble
from pipelines.ingest.discovery import (
    Delivery,
    changed_since_discovery,
    changed_text,
    reading_config,
    unreadable_text,
)
from pipelines.ingest.quarantine import MALFORMED, malformed_table, quarantine_table
from pipelines.ingest.stage import PartOutcome, stage_folders, stage_stem, unknown_file
from pipelines.warehouse import (
    CHANGED_AFTER_DISCOVERY,
    INTERNAL_ERROR,
    STAGE_FULL,
    UNREADABLE,
    StagedFile,
    remove_staged,
)

if TYPE_CHECKING:
    from pipelines.validation import Verdicts

log = logging.getLogger(__name__)


def _read_fault(e: BaseException, delivery: Delivery) -> FileRejected | None:
    """The rejection for an OS error reading the delivered file itself: gone since discovery
    (`changed_after_discovery`) or not readable (`unreadable`); None for any other error."""
    if not isinstance(e, OSError):
        return None
    if e.filename not in (str(delivery.path), delivery.path) and str(delivery.path) not in str(e):
        return None  # (Arrow names the file in its message only)
    if isinstance(e, FileNotFoundError):
        return FileRejected(CHANGED_AFTER_DISCOVERY, changed_text("removed or renamed"))
    return FileRejected(UNREADABLE, unreadable_text(e))


def _stage_full(e: BaseException, delivery: Delivery) -> FileRejected | None:
    """The rejection for a stage disk that ran out of space (or quota) while this file was
    staged: not the file's fault, nothing of it is loaded, and it is offered again. Arrow
    reports it as an OSError without errno, naming the cause in its message only."""
    if not isinstance(e, OSError):
        return None
    full = e.errno in (errno.ENOSPC, errno.EDQUOT) or any(
        text in str(e) for text in ("No space left on device", "Disk quota exceeded")
    )
    if not full:
        return None
    log.warning(
        "[%s] %s: the stage disk is full; the file is held back and offered again",
        delivery.clinic_id,
        delivery.path.name,
    )
    return FileRejected(
        STAGE_FULL,
        "no space left on the pipeline's stage disk while staging this file (a fault on our "
        "side, not in the file; the operators free space or move ALLIANCE_WATCH_STAGE); "
        "nothing of it was loaded, and it is offered again on the next run",
    )


def _reasons_per_row(issues: pd.DataFrame) -> pd.Series:
    """row -> sorted unique list of reasons."""
    if issues.empty:
        return pd.Series(dtype="object")
    return issues.groupby("row")["reason"].agg(lambda s: sorted(set(s)))


def split_delivery(
    delivery: Delivery, cfg: ClinicConfig, stage_dir: Path, part_bytes: int | None = None
) -> list[batching.Part]:
    """A delivery as parts of about `part_bytes` (default `settings.part_bytes()`); a
    Parquet file or a multi-byte encoding is never cut. Every preparation starts here, so the
    delivery's stage folders are emptied first: an earlier attempt stopped after staging (an
    Airflow task retried into the same stage folder) leaves no part for the loader to misread."""
    parts_dir = stage_dir / f"{stage_stem(delivery, cfg)}.parts"

    def clear_stage() -> None:
        for folder in (*stage_folders(delivery, cfg, stage_dir), parts_dir):
            remove_staged(folder)

    clear_stage()
    changed = changed_since_discovery(delivery)
    if changed is not None:
        raise FileRejected(CHANGED_AFTER_DISCOVERY, changed)
    reading = reading_config(delivery, cfg)
    try:
        parts = batching.write_chunks(
            delivery.path,
            parts_dir,
            part_bytes or settings.part_bytes(),
            splittable=reading.file_type != "parquet"
            and reading.encoding.lower().replace("-", "")
            in ("utf8", "latin1", "iso88591", "cp1252", "ascii"),
            header_lines=1 + reading.header_rows,
        )
    except OSError as e:
        fault = _read_fault(e, delivery) or _stage_full(e, delivery)
        if fault is None:
            raise
        clear_stage()
        raise fault from None
    if parts[0].path != delivery.path:  # copies: were they copied from the hashed bytes?
        changed = changed_since_discovery(delivery, gone_is_fine=True)
        if changed is not None:
            clear_stage()
            raise FileRejected(CHANGED_AFTER_DISCOVERY, changed)
    return parts


def prepare_part(
    delivery: Delivery,
    cfg: ClinicConfig,
    part: batching.Part,
    n_parts: int,
    stage_dir: Path,
    docs_dir: Path | None = None,
    build_docs: bool = True,
    verdicts: Verdicts | None = None,
) -> PartOutcome:
    """Read, guard, canonicalize and validate one part of a file; stage its valid and
    quarantined rows as that part's Parquet files. Parts of one file may be prepared in any
    order and in different processes. A file-level problem becomes the outcome's `error`.
    ``verdicts``: the GX verdicts already given in this run (see ``pipelines.validation.Verdicts``)."""
    valid_dir, quarantine_dir = stage_folders(delivery, cfg, stage_dir)
    name = f"p{part.index:05d}.parquet"
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        outcome = _prepare_part(
            delivery,
            cfg,
            part,
            n_parts,
            docs_dir,
            writers,
            valid_dir / name,
            quarantine_dir / name,
            build_docs,
            verdicts,
        )
        if part.path == delivery.path:  # read in place: were those the bytes hashed?
            changed = changed_since_discovery(delivery, gone_is_fine=True)
            if changed is not None:
                raise FileRejected(CHANGED_AFTER_DISCOVERY, changed)
        return outcome
    except Exception as e:
        for w in writers.values():
            w.close()
        writers.clear()
        for folder in (valid_dir, quarantine_dir):
            (folder / name).unlink(missing_ok=True)
        e = _stage_full(e, delivery) or _read_fault(e, delivery) or e
        already = isinstance(e, FileRejected) and e.code == CHANGED_AFTER_DISCOVERY
        if part.path == delivery.path and not already:
            # a file changed while it was read: the change, not what it did to the reading,
            # is the reason (a file removed once opened was read in full: its reason stands)
            changed = changed_since_discovery(delivery, gone_is_fine=True)
            if changed is not None:
                e = FileRejected(CHANGED_AFTER_DISCOVERY, changed)
        if not isinstance(e, FileRejected):
            # a fault of ours, not of the file: this file alone is held back, and offered again
            # on the next run; named by type and place only (the message may quote values)
            where = traceback.extract_tb(e.__traceback__)[-1]
            return PartOutcome(
                error=f"{INTERNAL_ERROR}: {type(e).__name__} at {Path(where.filename).name}:"
                f"{where.lineno} in {where.name} (a fault in Alliance Watch, not in the file; "
                "the file is offered again on every run)"
            )
        if n_parts == 1:
            return PartOutcome(error=str(e))
        return PartOutcome(
            error=f"{e} (in part {part.index + 1} of {n_parts}: line numbers count from "
            f"file line {part.line_offset + 1})"
        )
    finally:
        for w in writers.values():
            w.close()
        if part.path != delivery.path:
            part.path.unlink(missing_ok=True)


def prepare_file(
    delivery: Delivery,
    cfg: ClinicConfig,
    stage_dir: Path,
    docs_dir: Path | None = None,
    part_bytes: int | None = None,
    build_docs: bool = True,
    verdicts: Verdicts | None = None,
) -> StagedFile:
    """Read, guard, validate and split one file; stage valid and quarantined rows as Parquet.

    A large CSV goes through in parts of about `part_bytes` (default
    `settings.part_bytes()`), so memory stays bounded whatever the file's size; line
    numbers stay those of the delivered file, and a key repeated across parts is judged as if
    the file were one piece. Never raises for bad input: a file-level problem becomes a
    `rejected` result with a reason.
    """
    if delivery.dataset is None:
        return unknown_file(delivery, cfg)
    stage_dir.mkdir(parents=True, exist_ok=True)
    try:
        parts = split_delivery(delivery, cfg, stage_dir, part_bytes)
    except FileRejected as e:
        return assemble(delivery, cfg, stage_dir, [], [PartOutcome(error=str(e))])
    if verdicts is None:
        from pipelines.validation import Verdicts

        verdicts = Verdicts()  # one memory for the parts of this file
    outcomes: list[PartOutcome] = []
    for part in parts:
        outcomes.append(
            prepare_part(delivery, cfg, part, len(parts), stage_dir, docs_dir, build_docs, verdicts)
        )
        if outcomes[-1].error:
            break
    return assemble(delivery, cfg, stage_dir, parts, outcomes)


def _prepare_part(
    delivery: Delivery,
    cfg: ClinicConfig,
    part: batching.Part,
    n_parts: int,
    docs_dir: Path | None,
    writers: dict[str, pq.ParquetWriter],
    valid_path: Path,
    quarantine_path: Path,
    build_docs: bool = True,
    verdicts: Verdicts | None = None,
) -> PartOutcome:
    """Read, guard, canonicalize and validate one part; append its rows to the staged files."""
    from pipelines.ingest import guard as deid
    from pipelines.validation import validate

    dataset = str(delivery.dataset)
    cfg = reading_config(delivery, cfg)
    raw = readers.read_raw(part.path, dataset, cfg, part_of_file=n_parts > 1)
    deid.check_header(raw.header, dataset, cfg.safe_columns)
    if part.line_offset:
        i = raw.table.schema.get_field_index("source_line")
        raw.table = raw.table.set_column(
            i, "source_line", pc.add(raw.table.column(i), pa.scalar(part.line_offset, pa.int64()))
        )
    ignored = list(raw.ignored_columns)
    malformed = malformed_table(raw.malformed_lines, part.line_offset)
    if malformed is not None:
        _writer(writers, "quarantine", quarantine_path, malformed.schema).write_table(malformed)
    n_bad_lines = len(raw.malformed_lines)
    n = raw.table.num_rows
    if n == 0:
        reason = pd.DataFrame(
            {"row": [-1 - i for i in range(n_bad_lines)], "reason": [MALFORMED] * n_bad_lines}
        )
        return PartOutcome(
            n_bad_lines,
            0,
            n_bad_lines,
            0,
            reason,
            None,
            ignored,
            filtered=raw.filtered,
            keep_rows_checks=raw.keep_rows_checks,
        )
    id_issues, redact = deid.scan_values(raw.table, cfg)
    typed, cast_issues = readers.canonicalize(raw, cfg)
    typed = typed.set_column(
        typed.schema.get_field_index("source_file"),
        "source_file",
        pa.repeat(pa.scalar(delivery.path.name, pa.string()), n),
    )
    label = delivery.path.name if n_parts == 1 else f"{delivery.path.name}.part{part.index + 1}"
    # validate blanks the redacted cells itself and compares copies as delivered (raw)
    gx_issues, docs_path = validate(
        typed,
        dataset,
        cfg,
        docs_dir=docs_dir,
        file_name=label,
        redaction=redact,
        raw=raw.table,
        build_docs=build_docs,
        verdicts=verdicts,
    )
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
    clients: list[str] = []
    if len(keep):
        valid = typed if len(keep) == n else typed.take(pa.array(keep))
        _writer(writers, "valid", valid_path, valid.schema).write_table(valid)
        clients = pc.drop_null(pc.unique(valid.column("client_id"))).to_pylist()
    if len(quarantined):
        q = quarantine_table(raw.table, quarantined, per_row, redact, cfg)
        _writer(writers, "quarantine", quarantine_path, q.schema).write_table(q)
    if n_bad_lines:
        lines_issues = pd.DataFrame(
            {"row": [-1 - i for i in range(n_bad_lines)], "reason": MALFORMED}
        )
        issues = pd.concat([issues, lines_issues], ignore_index=True)
    return PartOutcome(
        rows_in=n + n_bad_lines,
        kept=len(keep),
        quarantined=len(quarantined) + n_bad_lines,
        duplicate=len(dup_rows),
        issues=issues,
        data_docs_path=str(docs_path) if docs_path else None,
        ignored_columns=ignored,
        clients=clients,
        filtered=raw.filtered,
        keep_rows_checks=raw.keep_rows_checks,
    )


def _writer(
    writers: dict[str, pq.ParquetWriter], kind: str, path: Path, schema: pa.Schema
) -> pq.ParquetWriter:
    """The part's Parquet writer for `kind` (valid or quarantine), opened at its first rows."""
    if kind not in writers:
        path.parent.mkdir(parents=True, exist_ok=True)
        # staged for one read by the loader: no dictionaries or statistics to build
        # (cheaper to write, as fast for DuckDB to read: benchmarks/README.md)
        writers[kind] = pq.ParquetWriter(path, schema, use_dictionary=False, write_statistics=False)
    return writers[kind]
