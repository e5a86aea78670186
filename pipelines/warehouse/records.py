"""What the loader is given and what it returns: a staged file and its ledger result."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

# the reason of a file rejected for a fault in Alliance Watch, not in the file: offered again
INTERNAL_ERROR = "internal_error"
# the reason of a file removed or rewritten between discovery and reading: offered again
CHANGED_AFTER_DISCOVERY = "changed_after_discovery"
# the reason of a file that could not be opened or read (permissions, I/O): offered again
UNREADABLE = "unreadable"
# the reason of a file that could not be staged because the stage disk was full: offered again
STAGE_FULL = "stage_full"
# rejections that judged nothing of the file's content
NOT_JUDGED = (INTERNAL_ERROR, CHANGED_AFTER_DISCOVERY, UNREADABLE, STAGE_FULL)


@dataclass
class FileResult:
    """What happened to one delivered file; mirrors its `ingest_files` row."""

    clinic_id: str
    file_name: str
    sha256: str
    dataset: str | None
    status: str  # loaded | loaded_with_quarantine | rejected | duplicate
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    # rows not taken in (outside rows_in): blank lines, rows a `keep_rows` condition excludes;
    # `filtered_reasons` names each reason with its count
    rows_filtered: int = 0
    filtered_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    top_reasons: list[str] = field(default_factory=list)
    data_docs_path: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    bytes: int = 0
    clients_touched: list[str] = field(default_factory=list)
    load_id: int | None = None
    # fingerprint of what it was judged under: the clinic config, the guard's and the suites'
    # versions (`pipelines.ingest.discovery.judge_fingerprint`)
    config_sha: str | None = None
    # judged again (it had loaded with rows held back, under another fingerprint): how many of
    # the rows held back then loaded now
    rejudged: bool = False
    rows_released: int = 0


@dataclass
class StagedFile:
    """A prepared file, ready for the single writer: its result so far and staged Parquet."""

    result: FileResult
    # Parquet: a file, or a folder of part files (`parquet_source`)
    valid_path: Path | None = None  # canonical rows to load
    quarantine_path: Path | None = None  # line_number, reasons, row_data
    # What preparing already established about the valid rows (None: not known, the loader
    # works it out): no key twice, and the sorted distinct clients.
    keys_unique: bool = False
    clients: list[str] | None = None

    def to_item(self) -> dict[str, object]:
        """The staged file as JSON-able values (an Airflow task hands it on through XCom):
        everything the loader reads, so `from_item` gives the loader what the CLI path does."""
        return {
            "result": asdict(self.result),
            "valid_path": str(self.valid_path) if self.valid_path else None,
            "quarantine_path": str(self.quarantine_path) if self.quarantine_path else None,
            "keys_unique": self.keys_unique,
            "clients": list(self.clients) if self.clients is not None else None,
        }

    @classmethod
    def from_item(cls, item: dict[str, object]) -> StagedFile:
        """The staged file `to_item` described."""
        clients = item.get("clients")
        return cls(
            result=FileResult(**item["result"]),  # type: ignore[arg-type]
            valid_path=Path(str(item["valid_path"])) if item.get("valid_path") else None,
            quarantine_path=(
                Path(str(item["quarantine_path"])) if item.get("quarantine_path") else None
            ),
            keys_unique=bool(item.get("keys_unique", False)),
            clients=[str(c) for c in clients] if isinstance(clients, list) else None,
        )


def parquet_source(path: Path) -> str:
    """What `read_parquet` reads for a staged path: a Parquet file, or every part file of a
    folder (a file prepared in parts), in part order."""
    return str(path / "*.parquet") if path.is_dir() else str(path)


def remove_staged(path: Path | None) -> None:
    """Delete a staged Parquet file or folder of part files (missing is fine)."""
    if path is None:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def split_code(error: str | None) -> str:
    """The reason code of a ledger error (the text before its first colon)."""
    return (error or "").split(":", 1)[0]
