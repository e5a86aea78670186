"""Opening a warehouse file: DuckDB lets one process open it read-write, and then no other
process may open it at all, so a writer waits its turn with a bounded retry."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from pipelines.errors import AllianceWatchError, WarehouseBusy
from pipelines.settings import warehouse_settings


def connect_file(
    path: Path | str, read_only: bool = False, timeout_s: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Open a warehouse file; wait up to `timeout_s` (default: the settings' lock timeout) for
    another process's lock, retrying with a growing pause, then raise WarehouseBusy."""
    settings = warehouse_settings()
    timeout_s = settings.lock_timeout_s if timeout_s is None else timeout_s
    path = Path(path)
    _check_is_duckdb_file(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(
                str(path), read_only=read_only, config={"memory_limit": settings.memory_limit}
            )
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() >= deadline:
                if "lock" in str(e).lower():
                    raise WarehouseBusy(
                        f"warehouse {path} is held by another process for more than "
                        f"{timeout_s:.0f} s; retry later or raise the timeout"
                    ) from None
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _check_is_duckdb_file(path: Path) -> None:
    """Refuse an existing file that is not a DuckDB database: DuckDB would otherwise attach
    something else (or nothing) and a run would "load" into memory and lose it."""
    if not path.exists():
        return
    if not path.is_file():
        raise AllianceWatchError(f"warehouse {path} is not a file")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head and head[8:12] != b"DUCK":
        raise AllianceWatchError(
            f"warehouse {path} is not a DuckDB database file; give a new or existing .duckdb path"
        )
