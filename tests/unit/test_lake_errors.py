"""Which DuckDB errors mean "the DuckLake catalog's PostgreSQL went away" (retry once it is
back) rather than a fault of ours: a restart during the lake's attach surfaced as an internal
error before (CI, stop 27)."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.warehouse import lake


@pytest.mark.parametrize(
    "error",
    [
        duckdb.TransactionException(
            "TransactionContext Error: Failed to load existing DuckLake: Current transaction is "
            "aborted (please ROLLBACK)"
        ),
        duckdb.TransactionException(
            "TransactionContext Error: Failed to commit: Failed to commit: Failed to execute query "
            '"COMMIT": server closed the connection unexpectedly'
        ),
        duckdb.Error(
            'Failed to query most recent snapshot for DuckLake: Failed to execute query "BEGIN '
            'TRANSACTION ISOLATION LEVEL REPEATABLE READ": server closed the connection'
        ),
        duckdb.IOException("Unable to connect to Postgres: connection refused"),
    ],
)
def test_a_catalog_cut_under_duckdb_is_recognised(error: duckdb.Error) -> None:
    assert lake.is_catalog_lost(error)


@pytest.mark.parametrize(
    "error",
    [
        # DuckDB's own: a statement after an error inside a transaction of ours is our fault
        duckdb.TransactionException(
            "TransactionContext Error: Current transaction is aborted (please ROLLBACK)"
        ),
        duckdb.TransactionException("TransactionContext Error: Conflict on tuple deletion!"),
        duckdb.BinderException('Binder Error: Referenced column "x" not found'),
        ValueError("server closed the connection"),  # not from DuckDB
    ],
)
def test_other_errors_are_not_taken_for_a_lost_catalog(error: Exception) -> None:
    assert not lake.is_catalog_lost(error)
