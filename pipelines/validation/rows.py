"""Row checks that run beside GX (several columns at once, or rows GX is not shown), and the split of
a file's rows into loaded, quarantined and duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.issues import cell_masks, empty_issues
from pipelines.registry import INSTRUMENTS, ITEM_COLUMNS
from pipelines.validation.frames import PROVENANCE, combinations

DUPLICATE_ROW = "duplicate_row"


DUPLICATE_ROW_REASON = (
    f"{DUPLICATE_ROW}: exact copy of an earlier row of this file (not loaded twice)"
)


# Text columns whose values are free-form in the export (codes, enumerations).
_TEXT_COLUMNS = ("client_id", "clinician_id", "instrument", "instrument_version", "status")


# A spreadsheet formula (=, +, -, @ leading; tab/CR prefixed variants) or HTML markup.
_FORMULA_OR_MARKUP = r"^\s*[=+\-@\t\r]|<\s*/?\s*[A-Za-z!][^>]*>|&#?[A-Za-z0-9]+;"


@dataclass(frozen=True)
class RowSplit:
    """One bool per row for each outcome; exactly one of the three is True for every row."""

    loaded: np.ndarray
    quarantined: np.ndarray
    duplicate: np.ndarray


def split_rows(n_rows: int, *issues: pd.DataFrame) -> RowSplit:
    """Split rows into loaded / quarantined / duplicate from any number of RowIssues frames.

    A row whose only reason is ``duplicate_row`` is a duplicate; a row with any other reason is
    quarantined; a row with no reason is loaded. So rows_in = loaded + quarantined + duplicate.
    """
    frames = [f for f in issues if len(f)]
    dup = np.zeros(n_rows, dtype=bool)
    bad = np.zeros(n_rows, dtype=bool)
    if frames:
        all_issues = pd.concat(frames, ignore_index=True)
        rows = all_issues["row"].to_numpy(dtype="int64")
        is_dup = all_issues["reason"].astype(str).str.startswith(DUPLICATE_ROW + ":").to_numpy()
        dup[rows[is_dup]] = True
        bad[rows[~is_dup]] = True
    duplicate = dup & ~bad
    return RowSplit(loaded=~(dup | bad), quarantined=bad, duplicate=duplicate)


def reasons_by_row(issues: pd.DataFrame) -> dict[int, list[str]]:
    """RowIssues grouped into row -> sorted unique reasons (for quarantine storage)."""
    if not len(issues):
        return {}
    grouped = issues.drop_duplicates().groupby("row")["reason"].agg(sorted)
    return {int(k): list(v) for k, v in grouped.items()}  # type: ignore[call-overload]


def row_issues(rows: np.ndarray, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"row": rows.astype("int64"), "reason": reason})


def check_formula_or_markup(table: pa.Table) -> pd.DataFrame:
    """Rows whose code/enumeration cells start like a spreadsheet formula or hold HTML markup."""
    frames = []
    for col in _TEXT_COLUMNS:
        if col not in table.column_names:
            continue
        # once per distinct value (codes and labels repeat), mapped back only on a hit
        column = table.column(col)
        encoded = pc.dictionary_encode(
            column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        )
        hit_d = pc.fill_null(
            pc.match_substring_regex(encoded.dictionary, _FORMULA_OR_MARKUP), False
        )
        if not pc.any(hit_d).as_py():
            continue
        hit = pc.fill_null(pc.take(hit_d, encoded.indices), False)
        mask = np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
        if mask.any():
            frames.append(
                row_issues(
                    np.flatnonzero(mask),
                    f"formula_or_markup: {col} starts like a spreadsheet formula or holds "
                    "HTML markup",
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else empty_issues()


def check_exact_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows identical (in every column but the line number) to an earlier row of the file;
    rows are named by ``frame``'s index labels.

    Pass the raw string table's frame when there is one: two rows are copies only when they
    were delivered alike, not when two different unreadable values both became blank.
    """
    content = [c for c in frame.columns if c not in PROVENANCE]
    dup = frame.duplicated(subset=content, keep="first").to_numpy()
    if not dup.any():
        return empty_issues()
    return row_issues(frame.index.to_numpy(dtype="int64")[dup], DUPLICATE_ROW_REASON)


def file_key(suite_dict: dict[str, Any]) -> tuple[str, ...] | None:
    """The columns the suite says are unique within a file."""
    for e in suite_dict["expectations"]:
        if e["type"] == "expect_compound_columns_to_be_unique":
            return tuple(e["kwargs"]["column_list"])
    return None


def copy_candidates(
    frame: pd.DataFrame, key: tuple[str, ...] | None, factorized: dict[str, tuple[np.ndarray, int]]
) -> np.ndarray:
    """Rows that could be an exact copy of another: those whose key repeats. Two rows
    delivered alike are typed and blanked alike, so they share their key; a file whose keys
    are all distinct (the usual case) needs no row-by-row comparison."""
    if key is None or not all(c in frame.columns for c in key):
        return np.arange(len(frame), dtype="int64")
    number, n_keys = combinations(frame, key, factorized)
    return np.flatnonzero((np.bincount(number, minlength=n_keys) > 1)[number])


def duplicate_basis(
    typed: pa.Table,
    frame: pd.DataFrame,
    raw: pa.Table | None,
    redaction: pd.DataFrame | None,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """The frame exact copies are judged on (only ``rows``, if given; indexed by row number):
    raw strings if given, else the typed values with every blanked (redacted) cell made unique
    so a blanked row never "equals" another."""
    if raw is not None and raw.num_rows == typed.num_rows:
        cols = [c for c in raw.column_names if c not in PROVENANCE]
        if rows is None:
            return raw.select(cols).to_pandas()
        basis = raw.select(cols).take(pa.array(rows, pa.int64())).to_pandas()
        basis.index = pd.Index(rows)
        return basis
    basis = frame.copy() if rows is None else frame.loc[rows].copy()
    if redaction is not None and len(redaction):
        redacted = np.unique(redaction["row"].to_numpy(dtype="int64"))
        basis["_redacted_row"] = -1
        redacted = redacted[np.isin(redacted, basis.index.to_numpy())]
        basis.loc[redacted, "_redacted_row"] = redacted
    return basis


def _scored_total(items: np.ndarray, scoring: str) -> np.ndarray:
    return items.mean(axis=1) if scoring == "mean" else items.sum(axis=1)


def _rows_by_instrument(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions of each registry instrument in ``frame`` (instruments present only)."""
    codes, uniques = pd.factorize(frame["instrument"])
    at = {str(u): i for i, u in enumerate(uniques)}
    return {code: np.flatnonzero(codes == at[code]) for code in INSTRUMENTS if code in at}


def check_total_consistency(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose delivered total differs from the registry scoring of complete items."""
    frames = []
    total = frame["total"].to_numpy(dtype="float64")
    labels = frame.index.to_numpy()
    every_item = frame[list(ITEM_COLUMNS)].to_numpy(dtype="float64")
    for code, rows in _rows_by_instrument(frame).items():
        ins = INSTRUMENTS[code]
        at = np.array([ITEM_COLUMNS.index(c) for c in ins.item_columns], dtype="int64")
        items = every_item[np.ix_(rows, at)]
        complete = ~np.isnan(items).any(axis=1)
        scored = _scored_total(np.nan_to_num(items), ins.scoring)
        delivered = total[rows]
        off = complete & ~np.isnan(delivered) & (np.abs(scored - delivered) > ins.total_tolerance)
        if off.any():
            frames.append(
                row_issues(
                    labels[rows[off]],
                    f"total_inconsistent: total differs from the {ins.scoring} of the {code} "
                    f"items by more than {ins.total_tolerance:.3g}",
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else empty_issues()


def total_only_rows(frame: pd.DataFrame, allowed: list[str]) -> np.ndarray:
    """Row labels of total-only entries the clinic allows (`allow_total_only`): an allowed
    instrument, every item blank, the total given (a paper form scored by hand)."""
    if "instrument" not in frame.columns:
        return np.zeros(0, dtype="int64")
    items = frame[list(ITEM_COLUMNS)].to_numpy(dtype="float64")
    mask = (
        frame["instrument"].isin(allowed).to_numpy(dtype=bool)
        & np.isnan(items).all(axis=1)
        & frame["total"].notna().to_numpy(dtype=bool)
    )
    return np.asarray(frame.index.to_numpy()[mask], dtype="int64")


def total_only_allowed(
    issues: pd.DataFrame, frame: pd.DataFrame, allowed: list[str]
) -> pd.DataFrame:
    """Drop the missing-item reasons of allowed total-only entries: they load with null items
    (the part-level signals then have nothing to work with and say so)."""
    rows = total_only_rows(frame, allowed)
    if not len(rows) or issues.empty:
        return issues
    echo = issues["row"].isin(rows) & issues["reason"].astype(str).str.startswith("item_missing")
    return issues.loc[~echo.to_numpy(dtype=bool)]


def check_item_step(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with an item that is not a multiple of its instrument's smallest step."""
    frames = []
    labels = frame.index.to_numpy()
    for code, rows in _rows_by_instrument(frame).items():
        ins = INSTRUMENTS[code]
        for col in ins.item_columns:
            values = frame[col].to_numpy(dtype="float64")[rows]
            steps = values / ins.item_step
            off = ~np.isnan(values) & (np.abs(steps - np.round(steps)) > 1e-6)
            if off.any():
                frames.append(
                    row_issues(
                        labels[rows[off]],
                        f"item_off_step: {col} is not a multiple of {ins.item_step:g} for {code}",
                    )
                )
    return pd.concat(frames, ignore_index=True) if frames else empty_issues()


def drop_redaction_echoes(
    issues: pd.DataFrame, redaction: pd.DataFrame, n_rows: int
) -> pd.DataFrame:
    """Drop "blank"/"bad code" reasons that only restate that a cell was redacted."""
    keep = np.ones(len(issues), dtype=bool)
    rows = issues["row"].to_numpy(dtype="int64")
    reasons = issues["reason"].astype(str)
    for col, mask in cell_masks(redaction, n_rows).items():
        echo = reasons.str.startswith(f"missing_value: {col} ") | reasons.str.startswith(
            f"invalid_code: {col} "
        )
        keep &= ~(echo.to_numpy() & mask[rows])
    return issues[keep]


def key_conflicts_as_delivered(
    issues: pd.DataFrame,
    frame: pd.DataFrame,
    key: tuple[str, ...] | None,
    raw: pa.Table | None,
    redaction: pd.DataFrame,
    n_rows: int,
) -> pd.DataFrame:
    """GX saw redacted key cells blanked, so every row with a redacted code shared one key
    with every other. Judge the rows it reported for a repeated key again, on the keys as
    delivered (redacted cells by their delivered value, which never leaves this function):
    only rows that still share a key keep the reason."""
    if key is None or raw is None or raw.num_rows != n_rows:
        return issues
    masks = {c: m for c, m in cell_masks(redaction, n_rows).items() if c in key}
    if not masks:
        return issues
    conflict = issues["reason"].astype(str).str.startswith("duplicate_key_in_file:")
    rows = np.unique(issues.loc[conflict, "row"].to_numpy(dtype="int64"))
    if not len(rows):
        return issues
    basis = frame.loc[rows, list(key)].astype("object")
    for col, mask in masks.items():
        hit = mask[rows]
        if hit.any() and col in raw.column_names:
            delivered = np.asarray(raw.column(col).take(pa.array(rows[hit])).to_pylist(), object)
            # marked, so a delivered identifier can never equal a code GX saw (not with NUL:
            # pandas hashes object strings as C strings, cut at the first NUL)
            basis.loc[rows[hit], col] = ["\u241f" + str(v) for v in delivered]
    still = rows[basis.duplicated(keep=False).to_numpy()]
    keep = ~conflict.to_numpy() | issues["row"].isin(still).to_numpy()
    return issues[keep]
