"""Discovery: the deliveries in a clinic's landing folder that the ledger has not seen yet,
what each is judged under, and whether a delivery is still the file that was hashed."""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import ClinicConfig, config_fingerprint
from pipelines.errors import FileRejected
from pipelines.ingest.guard import GUARD_VERSION
from pipelines.warehouse import UNREADABLE, FileResult


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
    """The SHA-256 of the file's bytes, read in 1 MiB blocks."""
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
            reason = str(FileRejected(UNREADABLE, unreadable_text(e)))
            rejected.append(_rejected_entry(cfg, p, sha, reason, dataset_of(p.name, cfg)))
            continue
        if p.name in known.get(sha, []):
            continue  # this exact delivery is already in the ledger
        found.append(Delivery(cfg.clinic_id, p, dataset_of(p.name, cfg), sha, size, stamp))
    return found, rejected


def unreadable_text(e: OSError) -> str:
    """The `unreadable` reason for a file the pipeline may not open or read."""
    return (
        f"{e.strerror or type(e).__name__}; the file could not be opened or read, so nothing "
        "of it was judged; it is offered again with every delivery until it can be read (give "
        "the pipeline read permission)"
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
        return changed_text("removed or renamed")
    if size == delivery.bytes and delivery.stamp in (None, stamp):
        return None
    return changed_text("rewritten or replaced")


def changed_text(what: str) -> str:
    """The `changed_after_discovery` reason for a file `what` (removed, rewritten, ...)."""
    return (
        f"the file was {what} after it was found and before it was read in full; nothing of "
        "it was judged and it is offered again as delivered next (write a file under a name "
        "the patterns do not match, then rename it)"
    )
