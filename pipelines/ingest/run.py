"""Ingest: discover new files, prepare each (read, guard, validate, split, stage), load each once.

The same functions serve the CLI (`alliance-watch ingest`) and the Airflow tasks:
`discover` and `load` need the warehouse (the single writer); `prepare_file` does not, so the
DAG runs it for many files in parallel.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import multiprocessing
import os
import re
import stat
import tempfile
import traceback
from collections import Counter, deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import settings
from pipelines.config import ClinicConfig, config_fingerprint, load_clinic_configs
from pipelines.errors import FileRejected
from pipelines.ingest import parts as batching
from pipelines.ingest import read as readers
from pipelines.ingest.guard import GUARD_VERSION
from pipelines.registry import APPOINTMENT_STATUSES, INSTRUMENTS, ITEM_COLUMNS
from pipelines.warehouse import (
    CHANGED_AFTER_DISCOVERY,
    INTERNAL_ERROR,
    STAGE_FULL,
    UNREADABLE,
    FileResult,
    StagedFile,
    backend,
    clients_of_earlier_load,
    engine,
    known_hashes,
    load_staged,
    open_warehouse,
    parquet_source,
    publish_snapshot,
    record_clinic_settings,
    remove_staged,
)

if TYPE_CHECKING:
    from pipelines.validation import Verdicts


log = logging.getLogger(__name__)


REDACTED = "[redacted]"


WITHHELD = "[withheld]"


@dataclass(frozen=True)
class Delivery:
    """A file found in a clinic's landing folder."""

    clinic_id: str
    path: Path
    dataset: str | None  # None: matches neither pattern
    sha256: str
    bytes: int
    # the file's identity when it was hashed (`file_stamp`), so a rewrite of the same size, in
    # place or renamed over it, is caught before and after reading; None (a delivery built by
    # hand) compares the size only
    stamp: str | None = None


def file_stamp(path: Path) -> tuple[int, str]:
    """(size, "<mtime_ns>:<ctime_ns>") of a file. The status-change time moves with every
    write, `utime` and rename and cannot be set back, so the stamp changes when the bytes are
    rewritten or another file is renamed over it, whatever modification time either is
    given (`cp -p`, `rsync -t`). No inode: a landing folder shared over the network may show
    other inode numbers on another worker."""
    st = path.stat()
    return st.st_size, f"{st.st_mtime_ns}:{st.st_ctime_ns}"


def judge_fingerprint(cfg: ClinicConfig) -> str:
    """A short fingerprint of everything a file is judged under: the clinic config, the
    guard's version (`deid.GUARD_VERSION`) and the suites as they are (their JSON). Recorded
    per file (`ingest_files.config_sha`); when it changes, files rejected or loaded with rows
    held back are judged again, and rows that pass now load."""
    return hashlib.sha256(
        f"{config_fingerprint(cfg)}|guard {GUARD_VERSION}|suites {_suites_digest()}".encode()
    ).hexdigest()[:16]


def _suites_digest() -> str:
    from pipelines.validation.suites import EXPECTATIONS_DIR

    h = hashlib.sha256()
    for path in sorted(EXPECTATIONS_DIR.glob("*.json")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_of(name: str, cfg: ClinicConfig) -> str | None:
    """The dataset of a delivered file by its name (the clinic's `files:` patterns, or its
    `measures_pattern` / `appointments_pattern`); None when no pattern matches."""
    found = cfg.reader_for(name)
    return found[0] if found is not None else None


def reading_config(delivery: Delivery, cfg: ClinicConfig) -> ClinicConfig:
    """The config a delivery is read with: its `files:` entry over the clinic's keys (the
    clinic's config itself without `files:`). Judging and the ledger use the clinic's."""
    found = cfg.reader_for(delivery.path.name)
    return found[1] if found is not None else cfg


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
        try:
            mode = p.lstat().st_mode
        except FileNotFoundError:
            continue  # renamed or removed since the folder was listed: nothing is there
        if not stat.S_ISREG(mode):
            kind = "symlink" if stat.S_ISLNK(mode) else "folder or special file"
            sha = hashlib.sha256(f"not-a-file:{p.name}".encode()).hexdigest()
            if p.name not in known.get(sha, []):
                rejected.append(
                    _rejected_entry(
                        cfg,
                        p,
                        sha,
                        f"not_a_regular_file: {kind}; never followed, deliver plain files",
                    )
                )
            continue
        try:
            size, stamp = file_stamp(p)  # before hashing: a write during it shows at prepare
            sha = sha256_of(p)
        except FileNotFoundError:
            continue  # renamed or removed since the folder was listed: nothing is there
        except OSError as e:
            sha = hashlib.sha256(f"unreadable:{p.name}".encode()).hexdigest()
            reason = str(FileRejected(UNREADABLE, _unreadable_text(e)))
            rejected.append(_rejected_entry(cfg, p, sha, reason, dataset_of(p.name, cfg)))
            continue
        if p.name in known.get(sha, []):
            continue  # this exact delivery is already in the ledger
        found.append(Delivery(cfg.clinic_id, p, dataset_of(p.name, cfg), sha, size, stamp))
    return found, rejected


def _unreadable_text(e: OSError) -> str:
    return (
        f"{e.strerror or type(e).__name__}; the file could not be opened or read, so nothing "
        "of it was judged; it is offered again with every delivery until it can be read (give "
        "the pipeline read permission)"
    )


def _read_fault(e: BaseException, delivery: Delivery) -> FileRejected | None:
    """The rejection for an OS error reading the delivered file itself: gone since discovery
    (`changed_after_discovery`) or not readable (`unreadable`); None for any other error."""
    if not isinstance(e, OSError):
        return None
    if e.filename not in (str(delivery.path), delivery.path) and str(delivery.path) not in str(e):
        return None  # (Arrow names the file in its message only)
    if isinstance(e, FileNotFoundError):
        return FileRejected(CHANGED_AFTER_DISCOVERY, _changed_text("removed or renamed"))
    return FileRejected(UNREADABLE, _unreadable_text(e))


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


def _rejected_entry(
    cfg: ClinicConfig, p: Path, sha: str, error: str, dataset: str | None = None
) -> FileResult:
    """The ledger row of a landing entry rejected before its content could be read."""
    return FileResult(
        clinic_id=cfg.clinic_id,
        file_name=p.name,
        sha256=sha,
        dataset=dataset,
        status="rejected",
        error=error,
        config_sha=judge_fingerprint(cfg),
    )


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


def _base_result(delivery: Delivery, cfg: ClinicConfig) -> FileResult:
    return FileResult(
        clinic_id=cfg.clinic_id,
        file_name=delivery.path.name,
        sha256=delivery.sha256,
        dataset=delivery.dataset,
        status="rejected",
        bytes=delivery.bytes,
        config_sha=judge_fingerprint(cfg),
    )


def _unknown_file(delivery: Delivery, cfg: ClinicConfig) -> StagedFile:
    base = _base_result(delivery, cfg)
    patterns = " nor ".join(repr(p) for p, _ in cfg.file_kinds() if p)
    key = "files[].pattern" if cfg.files else "measures_pattern / appointments_pattern"
    base.error = f"unknown_file: name matches neither {patterns} (add its pattern under {key})"
    return StagedFile(result=base)


def _stem(delivery: Delivery, cfg: ClinicConfig) -> str:
    """A delivery's name in the stage folder: its clinic, content and file name (the same
    bytes re-delivered under another name are prepared beside the original, apart)."""
    name = hashlib.sha256(delivery.path.name.encode()).hexdigest()[:8]
    return f"{cfg.clinic_id}-{delivery.sha256[:16]}-{name}"


def stage_folders(delivery: Delivery, cfg: ClinicConfig, stage_dir: Path) -> tuple[Path, Path]:
    """The folders a file's valid and quarantined rows are staged in, one Parquet file per
    part (the loader reads each folder as one table)."""
    stem = _stem(delivery, cfg)
    return stage_dir / f"{stem}.valid", stage_dir / f"{stem}.quarantine"


def changed_since_discovery(delivery: Delivery, gone_is_fine: bool = False) -> str | None:
    """Why the landing file no longer is the one `discover` hashed (removed, renamed, rewritten
    or replaced), or None. Checked before the file is cut into parts, after its parts are
    copied, and right after a file read in place is read, so the rows loaded are always those
    of the hashed bytes. `gone_is_fine`: a file read in full and removed since (an open file
    keeps its bytes) is not changed."""
    try:
        size, stamp = file_stamp(delivery.path)
    except FileNotFoundError:
        if gone_is_fine:
            return None
        return _changed_text("removed or renamed")
    if size == delivery.bytes and delivery.stamp in (None, stamp):
        return None
    return _changed_text("rewritten or replaced")


def _changed_text(what: str) -> str:
    return (
        f"the file was {what} after it was found and before it was read in full; nothing of "
        "it was judged and it is offered again as delivered next (write a file under a name "
        "the patterns do not match, then rename it)"
    )


def split_delivery(
    delivery: Delivery, cfg: ClinicConfig, stage_dir: Path, part_bytes: int | None = None
) -> list[batching.Part]:
    """A delivery as parts of about `part_bytes` (default `settings.part_bytes()`); a
    Parquet file or a multi-byte encoding is never cut. Every preparation starts here, so the
    delivery's stage folders are emptied first: an earlier attempt stopped after staging (an
    Airflow task retried into the same stage folder) leaves no part for the loader to misread."""
    parts_dir = stage_dir / f"{_stem(delivery, cfg)}.parts"

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


def assemble(
    delivery: Delivery,
    cfg: ClinicConfig,
    stage_dir: Path,
    parts: list[batching.Part],
    outcomes: list[PartOutcome],
) -> StagedFile:
    """One file's result from its parts' outcomes (in part order): a file rejected by any part
    is rejected as a whole, with the first part's reason and nothing staged; otherwise a key
    repeated across parts is judged as if the file were one piece, and the counts add up."""
    base = _base_result(delivery, cfg)
    valid_dir, quarantine_dir = stage_folders(delivery, cfg, stage_dir)
    for part in parts:  # copies of parts not prepared (a rejected file stops early)
        if part.path != delivery.path:
            part.path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (stage_dir / f"{_stem(delivery, cfg)}.parts").rmdir()
    rejected = next((o.error for o in outcomes if o.error), None)
    if rejected is not None:
        base.error = rejected
        if rejected.startswith(f"{INTERNAL_ERROR}:"):
            log.error("[%s] %s: %s", cfg.clinic_id, delivery.path.name, rejected)
        for folder in (valid_dir, quarantine_dir):
            remove_staged(folder)
        return StagedFile(result=base)
    staged = StagedFile(result=base)
    staged.valid_path = valid_dir if any(valid_dir.glob("*.parquet")) else None
    staged.quarantine_path = quarantine_dir if any(quarantine_dir.glob("*.parquet")) else None
    base.ignored_columns = outcomes[-1].ignored_columns if outcomes else []
    base.rows_in = sum(o.rows_in for o in outcomes)
    base.rows_loaded = sum(o.kept for o in outcomes)
    base.rows_quarantined = sum(o.quarantined for o in outcomes)
    base.rows_duplicate = sum(o.duplicate for o in outcomes)
    filtered: Counter[str] = Counter()
    for o in outcomes:
        filtered.update(o.filtered)
    base.rows_filtered = sum(filtered.values())
    base.filtered_reasons = [f"{reason} ({n})" for reason, n in filtered.most_common()]
    frames = [o.issues for o in outcomes if o.issues is not None and not o.issues.empty]
    if delivery.dataset == "measures":
        staged.clients = sorted({c for o in outcomes for c in o.clients})
    if len(parts) > 1 and staged.valid_path is not None:
        cross = _cross_part_keys(staged, str(delivery.dataset))
        if cross is not None:
            frames.append(cross)
    base.data_docs_path = next((o.data_docs_path for o in outcomes if o.data_docs_path), None)
    issues = pd.concat(frames, ignore_index=True) if frames else readers.empty_issues()
    base.top_reasons = _top_reasons(issues)
    if base.rows_loaded == 0 and base.rows_quarantined > 0:
        base.status = "rejected"
        base.error = "no_valid_rows: every row was quarantined; see quarantined_rows"
    else:
        base.status = "loaded_with_quarantine" if base.rows_quarantined else "loaded"
    return staged


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
        return _unknown_file(delivery, cfg)
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
    raw = readers.read_raw(part.path, dataset, cfg)
    deid.check_header(raw.header, dataset, cfg.safe_columns)
    if part.line_offset:
        i = raw.table.schema.get_field_index("source_line")
        raw.table = raw.table.set_column(
            i, "source_line", pc.add(raw.table.column(i), pa.scalar(part.line_offset, pa.int64()))
        )
    ignored = list(raw.ignored_columns)
    malformed = _malformed_table(raw.malformed_lines, part.line_offset)
    if malformed is not None:
        _writer(writers, "quarantine", quarantine_path, malformed.schema).write_table(malformed)
    n_bad_lines = len(raw.malformed_lines)
    n = raw.table.num_rows
    if n == 0:
        reason = pd.DataFrame(
            {"row": [-1 - i for i in range(n_bad_lines)], "reason": [MALFORMED] * n_bad_lines}
        )
        return PartOutcome(
            n_bad_lines, 0, n_bad_lines, 0, reason, None, ignored, filtered=raw.filtered
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
        q = _quarantine_table(raw.table, quarantined, per_row, redact, cfg)
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
    )


def _writer(
    writers: dict[str, pq.ParquetWriter], kind: str, path: Path, schema: pa.Schema
) -> pq.ParquetWriter:
    """The part's Parquet writer for `kind` (valid or quarantine), opened at its first rows."""
    if kind not in writers:
        path.parent.mkdir(parents=True, exist_ok=True)
        # staged for one read by the loader: no dictionaries or statistics to build
        # (a third cheaper to write; DuckDB reads it as fast)
        writers[kind] = pq.ParquetWriter(path, schema, use_dictionary=False, write_statistics=False)
    return writers[kind]


MALFORMED = (
    "wrong_field_count: the line has a different number of fields than the header (a stray "
    "delimiter or quote); its values are withheld"
)


def _malformed_table(lines: list[int], line_offset: int) -> pa.Table | None:
    """Quarantine rows for lines that could not be split into the header's columns."""
    if not lines:
        return None
    return pa.table(
        {
            "line_number": pa.array([line + line_offset for line in lines], pa.int64()),
            "reasons": pa.array([[MALFORMED]] * len(lines), pa.list_(pa.string())),
            "row_data": pa.array(['{"line":"[withheld]"}'] * len(lines), pa.string()),
        }
    )


CROSS_PART_KEYS = {
    "measures": ("client_id", "episode_id", "session_number", "instrument"),
    "appointments": ("client_id", "appointment_date"),
}


KEY_CONFLICT = (
    "duplicate_key_in_file: the same key appears more than once in the file with different "
    "values; every copy is held back"
)


def _cross_part_keys(staged: StagedFile, dataset: str) -> pd.DataFrame | None:
    """Judge keys repeated across parts as validation judges them within one: exact copies
    count as duplicates (the first is kept), differing copies are all quarantined. Adjusts the
    staged files and counts; returns the issues (None when no key repeats, the usual case)."""
    assert staged.valid_path is not None
    r = staged.result
    src = parquet_source(staged.valid_path)
    key = ", ".join(CROSS_PART_KEYS[dataset])
    con = engine(threads=1)  # beside the workers: as the loader (settings.load_threads)
    try:
        # keys alone first: no key in two parts (the usual case) needs nothing more
        repeats = con.execute(
            f"select count(*) from (select {key} from read_parquet(?) "  # noqa: S608
            f"group by {key} having count(*) > 1)",
            [src],
        ).fetchall()[0][0]
        if not repeats:
            staged.keys_unique = True  # the loader need not count them again
            return None
        con.execute("create table v as select * from read_parquet(?)", [src])
        cols = [c for (c,) in con.execute("select name from pragma_table_info('v')").fetchall()]
        values = ", ".join(f"{c} := {c}" for c in cols if c not in ("source_line", "source_file"))
        con.execute(
            f"""
            create table repeated as
            select {key}, count(distinct struct_pack({values})) as variants
            from v group by {key} having count(*) > 1
            """  # noqa: S608 - column names from the canonical schema
        )
        if not con.execute("select count(*) from repeated").fetchall()[0][0]:
            return None
        con.execute(
            f"""
            create table judged as
            with ranked as (
                select v.*, rp.variants,
                       row_number() over (partition by {", ".join("v." + k for k in CROSS_PART_KEYS[dataset])}
                                          order by v.source_line) as copy_no
                from v left join repeated as rp using ({key})
            )
            select *,
                   case when variants > 1 then 'conflict'
                        when variants = 1 and copy_no > 1 then 'duplicate'
                        else 'keep' end as verdict
            from ranked
            """  # noqa: S608
        )
        counts = dict(con.execute("select verdict, count(*) from judged group by 1").fetchall())
        keep_cols = ", ".join(cols)
        kept = con.execute(
            f"select {keep_cols} from judged where verdict = 'keep' order by source_line"  # noqa: S608
        ).fetch_arrow_table()
        conflict = con.execute(
            f"""
            select source_line as line_number, [?] as reasons,
                   to_json(struct_pack({values}))::varchar as row_data
            from judged where verdict = 'conflict' order by source_line
            """,  # noqa: S608
            [KEY_CONFLICT],
        ).fetch_arrow_table()
    finally:
        con.close()
    # the judged rows replace the parts' files (the folder is read as one table)
    remove_staged(staged.valid_path)
    staged.valid_path.mkdir()
    pq.write_table(kept, staged.valid_path / "p00000.parquet")
    n_conflict = int(counts.get("conflict", 0))
    n_dup = int(counts.get("duplicate", 0))
    if n_conflict:
        q_dir = staged.valid_path.with_name(
            staged.valid_path.name.removesuffix(".valid") + ".quarantine"
        )
        conflict = conflict.cast(
            pa.schema(
                [
                    ("line_number", pa.int64()),
                    ("reasons", pa.list_(pa.string())),
                    ("row_data", pa.string()),
                ]
            )
        )
        q_dir.mkdir(exist_ok=True)
        pq.write_table(conflict, q_dir / "p_keys_across_parts.parquet")  # sorts after the parts
        staged.quarantine_path = q_dir
    staged.keys_unique = True  # every repeated key was resolved above
    staged.clients = None  # a client whose rows were all held back is no longer in the file
    r.rows_loaded -= n_conflict + n_dup
    r.rows_quarantined += n_conflict
    r.rows_duplicate += n_dup
    if r.rows_loaded == 0:
        remove_staged(staged.valid_path)
        staged.valid_path = None
    return pd.DataFrame(
        {
            "row": -np.arange(1, n_conflict + n_dup + 1, dtype="int64"),
            "reason": [KEY_CONFLICT] * n_conflict + ["duplicate_row"] * n_dup,
        }
    )


def _quarantine_table(
    raw: pa.Table,
    rows: object,
    per_row: pd.Series,
    redact: pd.DataFrame | None,
    cfg: ClinicConfig,
) -> pa.Table:
    """Quarantined rows as delivered, with every reason, minus anything that could identify:
    cells the guard found identifying are "[redacted]", and any cell not of the shape its
    column expects (a name in an item, a date field holding words) is "[withheld]" (the reason
    already says what was wrong; the value itself is not needed to fix the export)."""
    idx = pa.array(rows, pa.int64())
    frame = raw.take(idx).to_pandas()
    lines = frame.pop("source_line").astype("int64")
    for col in frame.columns:
        shape = _expected_shape(col, cfg)
        if shape is None:
            continue
        text = frame[col].astype("string").str.strip()
        ok = text.isna() | (text == "") | text.str.fullmatch(shape, case=False).fillna(False)
        frame.loc[~ok.to_numpy(dtype=bool), col] = WITHHELD
    if redact is not None and not redact.empty:
        pos = {r: i for i, r in enumerate(per_row.index.tolist())}
        for col, group in redact.groupby("column"):
            hit = [pos[r] for r in group["row"].tolist() if r in pos]
            if col in frame.columns and hit:
                frame.iloc[hit, frame.columns.get_loc(col)] = REDACTED
    frame = frame.replace("", None)
    records = frame.to_json(orient="records", lines=True, force_ascii=False).splitlines()
    return pa.table(
        {
            "line_number": pa.array(lines.to_numpy(), pa.int64()),
            "reasons": pa.array(per_row.tolist(), pa.list_(pa.string())),
            "row_data": pa.array(records, pa.string()),
        }
    )


_NUMBER = r"[+-]?(\d+([.,]\d*)?|[.,]\d+)"


_SHAPES = {
    "session_number": _NUMBER,
    "total": _NUMBER,
    **{c: _NUMBER for c in ITEM_COLUMNS},
    # any date format: digits and date separators only
    "session_date": r"[0-9]{1,4}([./ -][0-9]{1,4}){0,2}",
    "appointment_date": r"[0-9]{1,4}([./ -][0-9]{1,4}){0,2}",
}


def _expected_shape(column: str, cfg: ClinicConfig) -> str | None:
    """The regular expression a quarantined cell must fully match to be stored as delivered."""
    if column in _SHAPES:
        return _SHAPES[column]
    if column in ("client_id", "clinician_id"):
        return cfg.code_pattern_for(column).removeprefix("^").removesuffix("$")
    if column == "instrument":
        words = [*INSTRUMENTS, *cfg.instrument_values]
    elif column == "status":
        words = [*APPOINTMENT_STATUSES, *cfg.status_values]
    else:
        return None
    return "|".join(re.escape(w) for w in words)


ProgressFn = Callable[[str], None]


def prepare_workers(deliveries: list[Delivery]) -> int:
    """How many processes prepare files at once: one per core (`ALLIANCE_WATCH_PREPARE_WORKERS`
    overrides), never more than the files; 1 means in this process. Preparing is CPU-bound
    Python (reader, guard, GX), so threads would not help; the DAGs get the same parallelism
    from mapped `prepare` tasks."""
    if len(deliveries) < 2:
        return 1
    n = settings.workers_wanted("PREPARE_WORKERS") or os.cpu_count() or 1
    return max(1, min(n, len(deliveries)))


@dataclass
class _Worker:
    """What a prepare worker keeps between the parts it is given: the GX verdicts of the run,
    shared with the other workers, each with its own rank."""

    verdicts: Verdicts | None = None


_WORKER = _Worker()  # one per worker process (a fork of the loader)


def _init_worker(parent: int, ranks: Any, workers: int, verdicts: Path) -> None:
    """Worker initializer. A worker never outlives the process that loads: if that process is
    killed, even with SIGKILL, its workers get SIGKILL too (Linux `PR_SET_PDEATHSIG`). Arrow
    allocates from the C heap, so `_release_memory` can hand a file's memory back."""
    import ctypes
    import signal

    from pipelines.validation import Sharing, Verdicts

    with ranks.get_lock():
        rank = int(ranks.value)
        ranks.value += 1
    _WORKER.verdicts = Verdicts(Sharing(verdicts, rank, workers))

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    # the loader is the pipeline's critical path: the workers take the CPU it leaves
    with contextlib.suppress(OSError):
        os.nice(settings.prepare_nice())
    pa.set_memory_pool(pa.system_memory_pool())


def _release_memory() -> None:
    """Return what one file's preparation freed to the system, so a worker's footprint stays
    that of one part rather than growing with every file (glibc keeps freed memory otherwise)."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _prepare_part_in_worker(
    delivery: Delivery,
    cfg: ClinicConfig,
    part: batching.Part,
    n_parts: int,
    stage_dir: Path,
    docs_dir: Path | None,
) -> PartOutcome:
    try:
        # Data Docs are rendered once for the run (publish_data_docs), not once per file
        return prepare_part(
            delivery, cfg, part, n_parts, stage_dir, docs_dir, False, _WORKER.verdicts
        )
    finally:
        _release_memory()


def _prepared_in_order(
    jobs: list[tuple[Delivery, ClinicConfig]],
    stage_dir: Path,
    docs_dir: Path | None,
    progress: ProgressFn | None,
    workers: int | None = None,
) -> Generator[StagedFile, None, None]:
    """Each job's staged file, in the order given, prepared `prepare_workers` at a time.

    With several workers the files' parts are prepared in forked processes (which inherit the
    already imported GX) while the caller loads the files that are ready: loading (DuckDB, in
    this process) overlaps preparing (Python, in the workers), and a large file keeps every
    worker busy. Files are cut into parts here, a few files ahead of the one being loaded. A
    worker's exception is raised here, in order, and the parts not yet prepared are
    cancelled."""
    workers = workers or prepare_workers([d for d, _ in jobs])
    if workers == 1:
        from pipelines.validation import Verdicts

        verdicts = Verdicts()  # one memory for the run's files
        for i, (d, cfg) in enumerate(jobs, 1):
            if progress:
                progress(f"[{cfg.clinic_id}] {i}/{len(jobs)} preparing {d.path.name}")
            yield prepare_file(d, cfg, stage_dir, docs_dir, build_docs=False, verdicts=verdicts)
        return
    if progress:
        progress(f"preparing {len(jobs)} files in {workers} processes")
    import gc

    import pipelines.validation  # noqa: F401 - imported once, shared by the forked workers

    stage_dir.mkdir(parents=True, exist_ok=True)
    # Objects that exist now are never collected in the workers: the collector then does not
    # touch (and so copy) the pages the forked workers share with this process.
    gc.freeze()
    pending: deque[tuple[Delivery, ClinicConfig, list[batching.Part], list[Future[PartOutcome]]]]
    pending = deque()
    queued = iter(jobs)
    context = multiprocessing.get_context("fork")
    ranks = context.Value("i", 0)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(), ranks, workers, stage_dir / "verdicts"),
    ) as pool:

        def submit_next() -> bool:
            job = next(queued, None)
            if job is None:
                return False
            d, cfg = job
            if d.dataset is None:
                pending.append((d, cfg, [], []))
                return True
            try:
                parts = split_delivery(d, cfg, stage_dir)
            except FileRejected as e:
                settled: Future[PartOutcome] = Future()
                settled.set_result(PartOutcome(error=str(e)))
                pending.append((d, cfg, [], [settled]))
                return True
            futures = [
                pool.submit(_prepare_part_in_worker, d, cfg, p, len(parts), stage_dir, docs_dir)
                for p in parts
            ]
            gc.unfreeze()  # the workers exist now (a fork pool starts them at the first submit)
            pending.append((d, cfg, parts, futures))
            return True

        try:
            for i in range(1, len(jobs) + 1):
                # keep the workers busy past the file waited on (and while it loads)
                while sum(len(f) for *_, f in list(pending)[1:]) < 2 * workers and submit_next():
                    pass
                if not pending:
                    submit_next()
                d, cfg, parts, futures = pending.popleft()
                if d.dataset is None:
                    staged = _unknown_file(d, cfg)
                else:
                    staged = assemble(d, cfg, stage_dir, parts, [f.result() for f in futures])
                if progress:
                    progress(f"[{cfg.clinic_id}] {i}/{len(jobs)} prepared {d.path.name}")
                yield staged
        finally:
            for *_, futures in pending:
                for f in futures:
                    f.cancel()


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
            prepared = _prepared_in_order(jobs, Path(tmp), docs_dir, progress)
            try:
                for entry in order:
                    staged = StagedFile(result=entry) if entry else next(prepared)
                    results.append(load_staged(conn, staged))
                    for path in (staged.valid_path, staged.quarantine_path):
                        remove_staged(path)  # keep the stage folder small
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


def publish_data_docs(docs_dir: Path | None) -> str | None:
    """Render the GX Data Docs site once for everything validated into `docs_dir`."""
    if docs_dir is None or not (Path(docs_dir) / "sanitized_results").exists():
        return None
    from pipelines.validation import build_data_docs

    return str(build_data_docs(Path(docs_dir)))


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


# ----------------------------------------------------------------------------- task-facing API
# JSON-friendly wrappers the Airflow tasks call (results travel through XCom as dicts).


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
    dataset = item["dataset"]
    d = Delivery(
        clinic_id,
        Path(str(item["path"])),
        str(dataset) if dataset else None,
        str(item["sha256"]),
        int(str(item["bytes"])),
        str(item["stamp"]) if item.get("stamp") else None,
    )
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


def _staged_item(s: StagedFile) -> dict[str, object]:
    return s.to_item()


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
        prepared = _prepared_in_order(jobs, stage_dir, docs_dir, None, 1 if daemonic else None)
        try:
            for i, staged in zip(where, prepared, strict=True):
                extra = {k: v for k, v in items[i].items() if k not in _ITEM_KEYS}
                out[i] = {**extra, **_staged_item(staged)}
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
            sf = StagedFile.from_item(s)
            r = load_staged(conn, sf)
            if r.status == "already_loaded":
                # a retry of this task after the file committed: its clients still go to
                # detection, which may never have heard of them
                r.clients_touched = clients_of_earlier_load(conn, r)
            results.append(r)
            for p in (sf.valid_path, sf.quarantine_path):
                remove_staged(p)
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
            }
            for r in results
        ],
        "rows": sum(r.rows_loaded for r in results),
        "clients": sorted({(r.clinic_id, c) for r in results for c in r.clients_touched}),
    }


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
