"""The pandas frame GX validates, and numbering the values and value combinations of its columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.registry import ITEM_COLUMNS

# Columns compared to find exact copies: everything but where the row came from.
PROVENANCE = ("source_line",)


def to_frame(table: pa.Table, dataset: str) -> pd.DataFrame:
    """The pandas frame GX validates: index = row number, numbers as float64, dates as datetime64."""
    wanted = [
        c
        for c in table.column_names
        if c not in ("clinic_id", "source_file") and not c.startswith("_")
    ]
    frame = table.select(wanted).to_pandas(date_as_object=False, ignore_metadata=True)
    frame.index = pd.RangeIndex(len(frame))
    for col in frame.columns:
        if col in ("session_date", "appointment_date"):
            # no cache: pandas' cache probe iterates the column in Python (benchmarks/README.md)
            frame[col] = pd.to_datetime(frame[col], cache=False)
        elif col == "session_number" or col in ITEM_COLUMNS or col == "total":
            frame[col] = frame[col].astype("float64")
        elif frame[col].dtype != object and col not in PROVENANCE:
            frame[col] = frame[col].astype(object)
    return frame


def value_codes(
    frame: pd.DataFrame, col: str, factorized: dict[str, tuple[np.ndarray, int]]
) -> tuple[np.ndarray, int]:
    """(every row's value number in ``col``, -1 for null; how many numbers there are, + 1)."""
    if col not in factorized:
        found, uniques = pd.factorize(frame[col], use_na_sentinel=True)
        factorized[col] = (np.asarray(found, dtype="int64"), len(uniques) + 1)
    return factorized[col]


def combinations(
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[np.ndarray, int]:
    """(the combination number of every row of ``frame`` in ``columns``, how many there are);
    nulls count as one value, as in ``DataFrame.duplicated``.

    ``factorized`` keeps each column's codes across the uses of one frame. When the combined
    code fits a small table it is numbered by counting, not hashing."""
    key: np.ndarray = np.zeros(len(frame), dtype="int64")
    size = 1
    for col in columns:
        codes, width = value_codes(frame, col, factorized)
        if size * width >= 2**62:  # re-number before the combined key could overflow
            renumbered, firsts = pd.factorize(key)
            key, size = np.asarray(renumbered, dtype="int64"), len(firsts)
        key = key * width + (codes + 1)
        size *= width
    inverse: np.ndarray
    if size <= max(4 * len(frame), 1 << 16):
        used = np.flatnonzero(np.bincount(key, minlength=size))
        number = np.empty(size, dtype="int64")
        number[used] = np.arange(len(used), dtype="int64")
        inverse, n_combos = number[key], len(used)
    else:
        found, combined = pd.factorize(key)
        inverse, n_combos = np.asarray(found, dtype="int64"), len(combined)
    return inverse, n_combos


def representatives(codes: np.ndarray, width: int, rows: np.ndarray) -> np.ndarray:
    """For every value number (+ 1), a row of ``rows`` that holds it."""
    rep = np.zeros(width, dtype="int64")
    rep[codes[rows] + 1] = rows
    return rep


def value_keys(values: pd.Series) -> list[Any]:
    """One exact, hashable key per value (a null is None, never NaN), so that remembered values
    are found again."""
    null = values.isna().to_numpy()
    keys: list[Any]
    if pd.api.types.is_datetime64_any_dtype(values):
        keys = values.to_numpy().view("int64").tolist()
    elif pd.api.types.is_float_dtype(values):
        keys = values.to_numpy(dtype="float64").tolist()
    else:
        keys = values.astype(object).to_numpy(dtype=object).tolist()
    if null.any():
        keys = [None if n else v for n, v in zip(null.tolist(), keys, strict=True)]
    return keys
