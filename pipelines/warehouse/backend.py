"""The interface every warehouse backend implements, and the transaction helper they share.

A backend is chosen once, from the settings (`pipelines.warehouse.backend`), or from an open
connection (`pipelines.warehouse.backend_of`); callers never ask which one they have."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from pipelines.settings import WarehouseSettings

T = TypeVar("T")


class Transaction:
    """The transaction a `transaction` block runs in."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn
        self.open = True

    def rollback(self) -> None:
        """End it now with nothing written; the end of the block then commits nothing."""
        self._conn.execute("rollback")
        self.open = False


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[Transaction]:
    """Run the block in one transaction: committed at its end (also when the block returns
    early), rolled back if it raises or calls `rollback()`."""
    conn.execute("begin transaction")
    tx = Transaction(conn)
    try:
        yield tx
        if tx.open:
            conn.execute("commit")
    except BaseException:
        if tx.open:
            with contextlib.suppress(duckdb.Error):
                conn.execute("rollback")
        raise


@dataclass(frozen=True)
class Erasure:
    """One client's erasure: `delete()` removes its rows (in the erasure's transaction) and
    returns the rows removed per relation; `operator_note` never names the client."""

    clinic_id: str
    client_id: str
    delete: Callable[[], dict[str, int]]
    operator_note: str | None


class Backend(abc.ABC):
    """Where the warehouse relations live and how they are written.

    Every backend holds the same relations (sql/schema/, and the lake form generated from it),
    runs the same SQL and loads through the same loader (`pipelines.warehouse.load`); they
    differ only in the methods below."""

    name: str

    def __init__(self, settings: WarehouseSettings, path: Path | None = None) -> None:
        self.settings = settings
        self.path = path

    @abc.abstractmethod
    def connect(
        self, read_only: bool = False, timeout_s: float | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A connection to the warehouse (a writer waits for its turn where the backend needs
        one, up to `timeout_s`, then raises WarehouseBusy)."""

    @abc.abstractmethod
    def migrate(self, conn: duckdb.DuckDBPyConnection) -> list[str]:
        """Bring the relations, the instrument registry and the analyst views up to date;
        the versions applied."""

    @contextlib.contextmanager
    def open(
        self, read_only: bool = False, timeout_s: float | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """connect() + migrate() (for writers), closed on exit."""
        conn = self.connect(read_only=read_only, timeout_s=timeout_s)
        try:
            if not read_only:
                self.migrate(conn)
            yield conn
        finally:
            conn.close()

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether there is a warehouse to read (a command that only reads refuses otherwise)."""

    @abc.abstractmethod
    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run `attempt()` (one whole transaction), again while it conflicts with another
        writer where the backend lets several write at once."""

    @abc.abstractmethod
    def reader(self, snapshot: Path) -> duckdb.DuckDBPyConnection | None:
        """A read-only connection for readers that must not take the writer's turn (the
        analyst snapshot, or the live lake); None when there is nothing to read yet."""

    @abc.abstractmethod
    def readable(self, snapshot: Path) -> bool:
        """Whether `reader(snapshot)` has something to read."""

    @abc.abstractmethod
    def read_published(
        self, snapshot: Path, read: Callable[[duckdb.DuckDBPyConnection], T]
    ) -> T | None:
        """`read(conn)` on what analysts read (the snapshot; the live warehouse when there is
        none, or it cannot be read), without taking the writer's turn where the backend has
        one; None when there is no warehouse yet."""

    def explain(self, error: BaseException, what: str) -> Exception | None:
        """The error to show the user for `error` when the backend itself failed (a lost
        catalog connection), else None."""
        return None

    @abc.abstractmethod
    def publish_snapshot(self, snapshot: Path, per_clinic: bool | None = None) -> Path:
        """Publish what analysts read; call it with no open connection to the warehouse."""

    @abc.abstractmethod
    def erase(
        self, conn: duckdb.DuckDBPyConnection, erasure: Erasure
    ) -> tuple[int, dict[str, int]]:
        """Run `erasure.delete()` and record the erasure (no client code) in one transaction, and
        make the deleted rows unrecoverable from the backend's own storage where that can be
        done on `conn`; (erasure id, rows removed per relation)."""

    @abc.abstractmethod
    def after_erasure(self, snapshot: Path | None) -> list[str]:
        """What remains to be done once the erasure's connection is closed; the snapshots
        published again."""

    # The loader's steps that differ between backends (see pipelines.warehouse.load).

    @abc.abstractmethod
    def before_load(self, conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None: ...

    @abc.abstractmethod
    def reserve_load_id(self, conn: duckdb.DuckDBPyConnection) -> int | None: ...

    @abc.abstractmethod
    def load_id(self, conn: duckdb.DuckDBPyConnection, reserved: int | None) -> int: ...

    @abc.abstractmethod
    def serialize_clinic(self, conn: duckdb.DuckDBPyConnection, clinic_id: str) -> None: ...

    @abc.abstractmethod
    def attempt_copy(self, staged: Any, result: Any) -> Any: ...

    @abc.abstractmethod
    def load_appointments(
        self, conn: duckdb.DuckDBPyConnection, r: Any, src: str
    ) -> tuple[int, list[str]]: ...

    @abc.abstractmethod
    def write_measurements(
        self, conn: duckdb.DuckDBPyConnection, r: Any, src: str, counts: dict[str, int]
    ) -> None: ...
