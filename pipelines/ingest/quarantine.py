"""Quarantined rows as the data team sees them: each row as delivered with every reason, minus
anything that could identify (cells the guard found identifying are redacted; a cell not of the
shape its column expects is withheld)."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa

from pipelines.config import ClinicConfig
from pipelines.ingest.guard import REDACTED
from pipelines.registry import APPOINTMENT_STATUSES, INSTRUMENTS, ITEM_COLUMNS

WITHHELD = "[withheld]"


MALFORMED = (
    "wrong_field_count: the line has a different number of fields than the header (a stray "
    "delimiter or quote); its values are withheld"
)


def malformed_table(lines: list[int], line_offset: int) -> pa.Table | None:
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


def quarantine_table(
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
        shape = expected_shape(col, cfg)
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


def expected_shape(column: str, cfg: ClinicConfig) -> str | None:
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
