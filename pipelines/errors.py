"""Typed errors. Each message tells its reader what is wrong and what would fix it, and never
contains a data value from a clinic file (values may be identifying)."""

from __future__ import annotations


class AllianceWatchError(Exception):
    """Base class: an error the user can act on; the CLI prints it on one line."""


class ConfigError(AllianceWatchError):
    """A clinic config is invalid. The message names the file and the key."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}")


class FileRejected(AllianceWatchError):
    """A delivered file is rejected as a whole; none of its rows is stored.

    `code` is a stable machine-readable reason (e.g. ``empty``, ``wrong_delimiter``),
    the message a specific human-readable explanation without data values.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class WarehouseBusy(AllianceWatchError):
    """Another process holds the warehouse file; retried with a bounded wait, then raised."""


class CatalogUnavailable(AllianceWatchError):
    """The warehouse catalog's PostgreSQL dropped or refused the connection (restarted, failed
    over, unreachable). Whatever was in flight did not commit; a retry once it is back is safe."""
