"""Row issues and cell masks: the frames every check returns (one row per (row, reason)) and
the masks of cells the de-identification guard holds back, shared by the guard, the readers
and validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def cell_masks(mask: pd.DataFrame, n_rows: int) -> dict[str, np.ndarray]:
    """The redaction mask as column -> one bool per table row."""
    out: dict[str, np.ndarray] = {}
    for col, rows in mask.groupby("column")["row"]:
        hit = np.zeros(n_rows, dtype=bool)
        hit[rows.to_numpy(dtype="int64")] = True
        out[str(col)] = hit
    return out


def _replace_cells(table: pa.Table, mask: pd.DataFrame, string_value: str | None) -> pa.Table:
    for col, hit in cell_masks(mask, table.num_rows).items():
        if col not in table.column_names:
            continue
        idx = table.column_names.index(col)
        column = table.column(idx)
        if string_value is not None and pa.types.is_string(column.type):
            fill = pa.scalar(string_value, pa.string())
        else:
            fill = pa.scalar(None, column.type)
        table = table.set_column(idx, table.field(idx), pc.if_else(pa.array(hit), fill, column))
    return table


def blank_cells(table: pa.Table, mask: pd.DataFrame) -> pa.Table:
    """The table with every masked cell set to null (what GX may see)."""
    return _replace_cells(table, mask, None)


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame(
        {"row": pd.Series([], dtype="int64"), "reason": pd.Series([], dtype="object")}
    )
