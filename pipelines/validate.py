"""Row-level validation of a typed canonical table with Great Expectations.

``validate`` runs the reviewed suite (``expectations/<dataset>.json``, generated from the
registry by ``pipelines.suites``) through GX 1.x on a pandas frame built from the Arrow table,
and returns every failing row with every reason (``RowIssues``), plus the path of a Data Docs page
for the file when ``docs_dir`` is given. GX runs on the distinct value combinations each rule
reads, not on every row, and remembers its verdicts per process (see ``judge`` and
docs/validation.md); the RowIssues are those of one whole-frame GX run (``strategy="full"``,
kept as the tested reference).

A few rules run beside GX as named functions (``check_*`` below), because they need several
columns at once or must see rows GX is not shown; the suite's ``meta.extra_checks`` documents
them so the suite lists every rule.

Identifying values never reach GX: cells in the de-identification guard's redaction mask are
blanked first, and the results are stripped of every value (unexpected lists, partial counts,
exception text) before Data Docs are rendered, so a code that fails its pattern is counted, not
shown.

Duplicates within a file: a row identical to an earlier row is marked ``duplicate_row`` and is
counted as a duplicate (``rows_duplicate``), not loaded twice and not quarantined, because a
repeated export line is harmless and the data team need not fix it. Rows that share a key but
differ are a real conflict: every copy is quarantined with ``duplicate_key_in_file``, since we
cannot know which one is right. ``split_rows`` turns the issues into the loaded / quarantined /
duplicate split the ledger records.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import logging
import pickle
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import ClinicConfig
from pipelines.deid import blank_cells, cell_masks, empty_issues
from pipelines.registry import INSTRUMENTS, ITEM_COLUMNS
from pipelines.suites import DATASETS, EXPECTATIONS_DIR, load_suite_dict

log = logging.getLogger(__name__)

DEFAULT_MIN_DATE = dt.date(1990, 1, 1)
DUPLICATE_ROW = "duplicate_row"
DUPLICATE_ROW_REASON = (
    f"{DUPLICATE_ROW}: exact copy of an earlier row of this file (not loaded twice)"
)

# Columns compared to find exact copies: everything but where the row came from.
_PROVENANCE = ("source_line",)
# Text columns whose values are free-form in the export (codes, enumerations).
_TEXT_COLUMNS = ("client_id", "clinician_id", "instrument", "instrument_version", "status")
# A spreadsheet formula (=, +, -, @ leading; tab/CR prefixed variants) or HTML markup.
_FORMULA_OR_MARKUP = r"^\s*[=+\-@\t\r]|<\s*/?\s*[A-Za-z!][^>]*>|&#?[A-Za-z0-9]+;"

# Result keys that carry only counts; everything else (values, index lists) is dropped before
# Data Docs are rendered.
_SAFE_RESULT_KEYS = frozenset(
    {
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
        "missing_count",
        "missing_percent",
    }
)


class ValidationEngineError(RuntimeError):
    """GX itself failed on an expectation: a pipeline fault, not a data problem."""


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


def _issues(rows: np.ndarray, reason: str) -> pd.DataFrame:
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
                _issues(
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
    content = [c for c in frame.columns if c not in _PROVENANCE]
    dup = frame.duplicated(subset=content, keep="first").to_numpy()
    if not dup.any():
        return empty_issues()
    return _issues(frame.index.to_numpy(dtype="int64")[dup], DUPLICATE_ROW_REASON)


def _file_key(suite_dict: dict[str, Any]) -> tuple[str, ...] | None:
    """The columns the suite says are unique within a file."""
    for e in suite_dict["expectations"]:
        if e["type"] == "expect_compound_columns_to_be_unique":
            return tuple(e["kwargs"]["column_list"])
    return None


def _copy_candidates(
    frame: pd.DataFrame, key: tuple[str, ...] | None, factorized: dict[str, tuple[np.ndarray, int]]
) -> np.ndarray:
    """Rows that could be an exact copy of another: those whose key repeats. Two rows
    delivered alike are typed and blanked alike, so they share their key; a file whose keys
    are all distinct (the usual case) needs no row-by-row comparison."""
    if key is None or not all(c in frame.columns for c in key):
        return np.arange(len(frame), dtype="int64")
    number, n_keys = _combinations(frame, key, factorized)
    return np.flatnonzero((np.bincount(number, minlength=n_keys) > 1)[number])


def _duplicate_basis(
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
        cols = [c for c in raw.column_names if c not in _PROVENANCE]
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
                _issues(
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


def _total_only_allowed(
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
                    _issues(
                        labels[rows[off]],
                        f"item_off_step: {col} is not a multiple of {ins.item_step:g} for {code}",
                    )
                )
    return pd.concat(frames, ignore_index=True) if frames else empty_issues()


def _drop_redaction_echoes(
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


def _key_conflicts_as_delivered(
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


def _to_frame(table: pa.Table, dataset: str) -> pd.DataFrame:
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
            # no cache: pandas' cache probe iterates the column in Python (~1 s per 1M rows)
            frame[col] = pd.to_datetime(frame[col], cache=False)
        elif col == "session_number" or col in ITEM_COLUMNS or col == "total":
            frame[col] = frame[col].astype("float64")
        elif frame[col].dtype != object and col not in _PROVENANCE:
            frame[col] = frame[col].astype(object)
    return frame


def _today_in(cfg: ClinicConfig) -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(cfg.timezone)).date()


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60].strip("._") or "file"
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _build_suite(gx: Any, suite_dict: dict[str, Any]) -> Any:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = [
        ExpectationConfiguration(
            type=e["type"], kwargs=e["kwargs"], meta=e.get("meta", {})
        ).to_domain_obj()
        for e in suite_dict["expectations"]
    ]
    return gx.ExpectationSuite(
        name=suite_dict["name"], expectations=expectations, meta=suite_dict.get("meta", {})
    )


def _sanitize(results: Any) -> None:
    """Drop every value GX put into a result; keep only counts (in place)."""
    for r in results.results:
        r.result = {k: v for k, v in (r.result or {}).items() if k in _SAFE_RESULT_KEYS}
        info = r.exception_info or {}
        if info.get("raised_exception"):
            r.exception_info = {
                "raised_exception": True,
                "exception_message": "expectation failed to run (details withheld)",
                "exception_traceback": None,
            }


# ---------------------------------------------------------------------------------------------
# The distinct-value engine.
#
# Every per-row expectation of the suite (not_null, be_null, between, match_regex, in_set, each
# with an optional row condition on another column) is a pure function of the few columns it
# reads. Those columns hold few distinct combinations (5 instruments x ~100 item values, a few
# hundred dates, thousands of codes), so GX is run on the distinct combinations only, and each
# unexpected combination is mapped back to every row that holds it. GX remains the engine that
# decides pass/fail: every verdict comes from a GX run of the reviewed expectation, unchanged, on
# exactly that combination of values. Verdicts are remembered per process (keyed by the
# expectations, the run parameters and the column types), so the parts of a large file and the
# files of one run send GX only the combinations it has not judged yet.
#
# Two expectations are not per-row and run differently:
# * expect_table_columns_to_match_set reads only the header: run on the frame with no rows.
# * expect_compound_columns_to_be_unique: a row can fail only when another row has the same key,
#   so GX runs on exactly the rows whose key repeats (a superset of the failures; a row outside it
#   is unique in the whole frame, and one inside has all its key twins with it).
# Anything else (a new type, a row condition this module cannot evaluate for the Data Docs
# counts) runs on the whole frame, as a plain GX run would.
# ---------------------------------------------------------------------------------------------

_PER_ROW_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_in_set",
    }
)
_HEADER_TYPES = frozenset({"expect_table_columns_to_match_set"})
_KEY_TYPES = frozenset({"expect_compound_columns_to_be_unique"})
_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 0,
    "return_unexpected_index_query": False,
}
# Verdicts remembered per group before the memory is cleared (bounds memory on long runs).
_MAX_REMEMBERED = 2_000_000


@dataclass(frozen=True)
class RuleGroup:
    """Expectations run together on one frame: ``kind`` says which frame.

    ``distinct``: the distinct combinations of ``columns``; ``header``: the frame with no rows;
    ``key``: the rows whose ``columns`` key repeats; ``full``: the whole frame.
    """

    kind: str
    columns: tuple[str, ...]
    positions: tuple[int, ...]


def _condition_columns(cond: Any) -> set[str]:
    if isinstance(cond, dict):
        found = set()
        col = cond.get("column")
        if isinstance(col, dict) and isinstance(col.get("name"), str):
            found.add(col["name"])
        for v in cond.values():
            found |= _condition_columns(v)
        return found
    if isinstance(cond, list):
        return set().union(*(_condition_columns(v) for v in cond)) if cond else set()
    return set()


def _simple_condition(cond: Any) -> bool:
    """True for the condition shapes ``_condition_mask`` evaluates (column == value, IN list)."""
    return (
        isinstance(cond, dict)
        and cond.get("type") == "comparison"
        and isinstance(cond.get("column"), dict)
        and cond.get("operator") in ("==", "IN")
        and set(cond) == {"type", "column", "operator", "parameter"}
    )


def _condition_mask(cond: dict[str, Any] | None, frame: pd.DataFrame) -> np.ndarray:
    """Rows of ``frame`` inside an expectation's row condition (used only for Data Docs counts)."""
    if cond is None:
        return np.ones(len(frame), dtype=bool)
    values = frame[cond["column"]["name"]]
    wanted = cond["parameter"] if cond["operator"] == "IN" else [cond["parameter"]]
    return values.isin(wanted).to_numpy(dtype=bool) & values.notna().to_numpy(dtype=bool)


def plan_groups(suite_dict: dict[str, Any]) -> list[RuleGroup]:
    """Group the suite's expectations by the frame they run on (see the comment above).

    Per-row expectations are grouped by the set of columns they read (their column and the
    columns of their row condition); a group whose columns are a subset of another group's is
    merged into the smallest such group, since the distinct combinations of the larger set decide
    the smaller rule as well.
    """
    by_columns: dict[frozenset[str], list[int]] = {}
    order: dict[str, int] = {}
    groups: list[RuleGroup] = []
    full: list[int] = []
    for i, e in enumerate(suite_dict["expectations"]):
        kw = e["kwargs"]
        cond = kw.get("row_condition")
        if e["type"] in _HEADER_TYPES:
            groups.append(RuleGroup("header", (), (i,)))
        elif e["type"] in _KEY_TYPES and cond is None:
            groups.append(RuleGroup("key", tuple(kw["column_list"]), (i,)))
        elif e["type"] in _PER_ROW_TYPES and (cond is None or _simple_condition(cond)):
            read = frozenset({kw["column"], *_condition_columns(cond)})
            for c in (kw["column"], *sorted(_condition_columns(cond))):
                order.setdefault(c, len(order))
            by_columns.setdefault(read, []).append(i)
        else:
            full.append(i)
    merged: dict[frozenset[str], list[int]] = {}
    for cols in sorted(by_columns, key=len, reverse=True):
        supersets = [m for m in merged if cols < m]
        target: frozenset[str] = min(supersets, key=len) if supersets else cols
        merged.setdefault(target, []).extend(by_columns[cols])
    for columns, positions in merged.items():
        groups.append(
            RuleGroup(
                "distinct", tuple(sorted(columns, key=order.__getitem__)), tuple(sorted(positions))
            )
        )
    if full:
        groups.append(RuleGroup("full", (), tuple(full)))
    return groups


def _combinations(
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[np.ndarray, int]:
    """(the combination number of every row of ``frame`` in ``columns``, how many there are);
    nulls count as one value, as in ``DataFrame.duplicated``.

    ``factorized`` keeps each column's codes across the groups of one frame (``instrument`` is
    read by most groups). Rule groups read few columns of few values (an instrument and one
    item), so the combined code usually fits a small table and is numbered by counting, not
    hashing."""
    key: np.ndarray = np.zeros(len(frame), dtype="int64")
    size = 1
    for col in columns:
        if col not in factorized:
            found, uniques = pd.factorize(frame[col], use_na_sentinel=True)
            factorized[col] = (np.asarray(found, dtype="int64"), len(uniques) + 1)
        codes, width = factorized[col]
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


def _distinct(
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[pd.DataFrame, np.ndarray]:
    """(the distinct combinations of ``columns``, the combination of every row of ``frame``)."""
    inverse, n_combos = _combinations(frame, columns, factorized)
    representative = np.empty(n_combos, dtype="int64")
    representative[inverse] = np.arange(len(frame), dtype="int64")
    combos = frame[list(columns)].iloc[representative].reset_index(drop=True)
    return combos, inverse


def _merge_keys(combos: pd.DataFrame) -> list[tuple[Any, ...]]:
    """One exact, hashable key per combination (nulls included: a null is None, never NaN),
    so that remembered combinations are found again."""
    out: list[list[Any]] = []
    for col in combos.columns:
        values = combos[col]
        null = values.isna().to_numpy()
        filled: list[Any]
        if pd.api.types.is_datetime64_any_dtype(values):
            filled = values.to_numpy().view("int64").tolist()
        elif pd.api.types.is_float_dtype(values):
            filled = values.to_numpy(dtype="float64").tolist()
        else:
            filled = values.astype(object).to_numpy(dtype=object).tolist()
        if null.any():
            filled = [None if n else v for n, v in zip(null.tolist(), filled, strict=True)]
        out.append(filled)
    return list(zip(*out, strict=True)) if out else [()] * len(combos)


@dataclass
class _Memory:
    """Verdicts GX gave for one group: one row per judged combination, one bool per rule."""

    index: dict[tuple[Any, ...], int]  # combination key -> row of ``failed``
    failed: np.ndarray  # (combinations, rules)
    templates: list[Any]  # one GX result per rule, for the Data Docs page


class _Engine:
    """One GX context per process, reused for every file of a run (creating one costs ~0.1 s)."""

    def __init__(self) -> None:
        import great_expectations as gx

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
        asset = self.context.data_sources.add_pandas("clinic_export").add_dataframe_asset("frames")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("frame")
        self.suites: dict[str, Any] = {}
        self.memory: dict[str, _Memory] = {}

    def run(
        self, frame: pd.DataFrame, expectations: list[dict[str, Any]], parameters: dict[str, Any]
    ) -> list[Any]:
        """GX results for ``expectations`` on ``frame``, in the order given."""
        text = json.dumps(expectations, sort_keys=True, default=str)
        suite = self.suites.get(text)
        if suite is None:
            name = f"group_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
            suite = _build_suite(self.gx, {"name": name, "expectations": expectations})
            self.suites[text] = suite
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        with _configurations_built_once():
            results = batch.validate(
                suite, expectation_parameters=parameters, result_format=_RESULT_FORMAT
            ).results
        by_rule = {_result_key(r): r for r in results}
        out = []
        for e in expectations:
            r = by_rule.get(_rule_key(e["type"], e.get("meta")))
            if r is None or (r.exception_info or {}).get("raised_exception"):
                raise ValidationEngineError(
                    f"GX could not evaluate the rule {e.get('meta', {}).get('reason', '?')!r}; "
                    "this is a pipeline fault, not a data problem"
                )
            out.append(r)
        return out


@contextlib.contextmanager
def _configurations_built_once() -> Iterator[None]:
    """While GX validates, two things it recomputes are computed once (GX 1.24):

    - each expectation's `configuration`, which GX rebuilds (a pydantic `dict()`) every time it
      reads one of its keyword arguments, ~160 times per expectation and run;
    - each row condition's filtered frame, which GX queries (`DataFrame.query`, parsed anew)
      once per metric of the expectation, ~6 times.

    Together they were half of a small validation's time. GX makes fresh expectation objects
    from the suite for every validation, validates one frame, and only reads both while it
    validates, so what is built once is what it would build again. The objects are kept
    referenced until the end (an `id` is never reused) and the classes get their own methods
    back afterwards. `_run_full`, the tested reference, runs without this."""
    from great_expectations.execution_engine.pandas_execution_engine import (
        PandasExecutionEngine,
    )
    from great_expectations.expectations.expectation import Expectation

    configuration_property = Expectation.__dict__["configuration"]
    row_filter = PandasExecutionEngine.__dict__["_apply_row_condition_filter"]
    built: dict[int, tuple[Any, Any]] = {}
    filtered: dict[tuple[int, str], tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = built.get(id(self))
        if hit is None:
            hit = built[id(self)] = (self, configuration_property.fget(self))
        return hit[1]

    def apply_row_condition_filter(
        self: Any, data: Any, row_condition: Any, domain_kwargs: dict[str, Any]
    ) -> Any:
        key = (
            id(data),
            json.dumps(
                [row_condition, domain_kwargs.get("condition_parser")], sort_keys=True, default=repr
            ),
        )
        hit = filtered.get(key)
        if hit is None:
            hit = filtered[key] = (data, row_filter(self, data, row_condition, domain_kwargs))
        return hit[1]

    Expectation.configuration = property(configuration)  # type: ignore[method-assign,assignment]
    PandasExecutionEngine._apply_row_condition_filter = apply_row_condition_filter  # type: ignore[method-assign]
    try:
        yield
    finally:
        Expectation.configuration = configuration_property  # type: ignore[method-assign]
        PandasExecutionEngine._apply_row_condition_filter = row_filter  # type: ignore[method-assign]


def _rule_key(type_: str, meta: Any) -> str:
    # Type and meta identify a rule: every expectation's meta carries its own explanation
    # (kwargs are not compared because GX fills the suite parameters into its copy).
    return json.dumps([type_, dict(meta or {})], sort_keys=True, default=str)


def _result_key(result: Any) -> str:
    config = result.expectation_config
    return _rule_key(config.type, config.meta)


_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


@dataclass
class _Sharing:
    """Verdicts shared by the processes preparing one run's files (see ``share_verdicts``)."""

    folder: Path
    rank: int
    processes: int
    seen: dict[Path, int]  # peer file -> the modification time last read


_SHARING: _Sharing | None = None


def share_verdicts(folder: Path, rank: int, processes: int) -> None:
    """Share GX verdicts with the other processes of one run, through files in ``folder``.

    Each process judges a file's first rows with a cold memory: ~0.5 s of GX runs, the same
    in every process. With sharing, process ``rank`` of ``processes`` starts with a different
    share of the rule groups and publishes what GX told it; before asking GX about
    combinations it has not seen, a process reads what the others published. A verdict
    depends only on the combination, the rules, their parameters and the column types, which
    the memory key holds, so a peer's verdict is the one GX would give here. The folder holds
    value combinations (codes among them): it belongs in the run's stage folder, which is
    deleted with it."""
    global _SHARING
    folder.mkdir(parents=True, exist_ok=True)
    _SHARING = _Sharing(folder, rank, max(1, processes), {})


def _shared_name(memo: str, rank: int) -> str:
    return f"{hashlib.sha256(memo.encode()).hexdigest()[:32]}.{rank}.pickle"


def _read_peers(memo: str, mem: _Memory | None, n_rules: int) -> _Memory | None:
    """``mem`` with the verdicts the other processes published for ``memo`` added."""
    share = _SHARING
    if share is None:
        return mem
    for rank in range(share.processes):
        path = share.folder / _shared_name(memo, rank)
        if rank == share.rank:
            continue
        try:
            stamp = path.stat().st_mtime_ns
            if share.seen.get(path) == stamp:
                continue
            peer: _Memory = pickle.loads(path.read_bytes())  # noqa: S301 - our own run's files
        except (OSError, EOFError, pickle.UnpicklingError):
            continue  # not published yet
        share.seen[path] = stamp
        if mem is None:
            mem = _Memory({}, np.zeros((0, n_rules), dtype=bool), peer.templates)
        missing = [(k, i) for k, i in peer.index.items() if k not in mem.index]
        if missing:
            start = len(mem.failed)
            mem.index.update({k: start + n for n, (k, _) in enumerate(missing)})
            mem.failed = np.vstack([mem.failed, peer.failed[[i for _, i in missing]]])
    return mem


def _publish(memo: str, mem: _Memory) -> None:
    share = _SHARING
    if share is None:
        return
    path = share.folder / _shared_name(memo, share.rank)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(mem, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(path)  # a reader sees the old or the new file, never half of one


def _groups_in_turn(groups: list[RuleGroup]) -> list[RuleGroup]:
    """The groups, starting at this process's share when verdicts are shared."""
    share = _SHARING
    if share is None or share.processes < 2:
        return groups
    k = len(groups) * share.rank // share.processes
    return groups[k:] + groups[:k]


def _percent(part: int, whole: int) -> float | None:
    return part / whole * 100 if whole else None  # the same float arithmetic as GX


def _counted(template: Any, element: int, missing: int, unexpected: int) -> Any:
    """A copy of a (sanitized) GX result with the counts of the whole frame, in GX's terms:
    ``unexpected_percent`` is relative to the non-missing rows where GX reports missing ones."""
    has_missing = "missing_count" in (template.result or {})
    nonnull = element - missing if has_missing else element
    counts = {
        "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": _percent(unexpected, nonnull),
        "missing_count": missing,
        "missing_percent": _percent(missing, element),
        "unexpected_percent_total": _percent(unexpected, element),
        "unexpected_percent_nonmissing": _percent(unexpected, nonnull),
    }
    out = copy.copy(template)
    out.result = {k: counts[k] for k in (template.result or {}) if k in counts}
    out.success = unexpected == 0
    return out


def _sanitized_copy(result: Any) -> Any:
    out = copy.copy(result)
    out.result = {k: v for k, v in (result.result or {}).items() if k in _SAFE_RESULT_KEYS}
    return out


def _memo_key(
    kind: str,
    expectations: list[dict[str, Any]],
    parameters: dict[str, Any],
    frame: pd.DataFrame,
    columns: tuple[str, ...],
) -> str:
    return json.dumps(
        [
            kind,
            expectations,
            {k: str(v) for k, v in sorted(parameters.items())},
            [(c, str(frame[c].dtype)) for c in columns],
        ],
        sort_keys=True,
        default=str,
    )


def _recall(mem: _Memory, keys: list[tuple[Any, ...]], failed: np.ndarray) -> np.ndarray:
    """Fill ``failed`` with the remembered verdicts of ``keys``; which keys were remembered."""
    found = np.fromiter((mem.index.get(k, -1) for k in keys), dtype="int64", count=len(keys))
    known = found >= 0
    failed[known] = mem.failed[found[known]]
    return known


def _judge_distinct(
    eng: _Engine,
    group: RuleGroup,
    expectations: list[dict[str, Any]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[list[np.ndarray], list[Any]]:
    """Failing rows (index labels of ``frame``) and a whole-frame result per rule of the group."""
    combos, inverse = _distinct(frame, group.columns, factorized)
    keys = _merge_keys(combos)
    memo = _memo_key("distinct", expectations, parameters, frame, group.columns)
    mem = eng.memory.get(memo)
    failed = np.zeros((len(combos), len(expectations)), dtype=bool)
    known = np.zeros(len(combos), dtype=bool)
    if mem is not None:
        known = _recall(mem, keys, failed)
    new = np.flatnonzero(~known)
    if len(new) and _SHARING is not None:
        mem = _read_peers(memo, mem, len(expectations))
        if mem is not None:
            known = _recall(mem, keys, failed)
            new = np.flatnonzero(~known)
            eng.memory[memo] = mem
    if len(new):
        results = eng.run(combos.iloc[new].reset_index(drop=True), expectations, parameters)
        for j, r in enumerate(results):
            at = np.asarray((r.result or {}).get("unexpected_index_list") or [], dtype="int64")
            failed[new[at], j] = True
        templates = [_sanitized_copy(r) for r in results]
        if mem is None or len(mem.index) + len(new) > _MAX_REMEMBERED:
            mem = _Memory({}, np.zeros((0, len(expectations)), dtype=bool), templates)
        start = len(mem.failed)
        mem.index.update({keys[i]: start + n for n, i in enumerate(new.tolist())})
        mem.failed = np.vstack([mem.failed, failed[new]])
        mem.templates = templates
        eng.memory[memo] = mem
        _publish(memo, mem)
    assert mem is not None
    labels = frame.index.to_numpy(dtype="int64")
    weight = np.bincount(inverse, minlength=len(combos))
    masks: dict[str, np.ndarray] = {}
    none = np.zeros(0, dtype="int64")
    rows, results = [], []
    for j, e in enumerate(expectations):
        failing = failed[:, j]
        rows.append(labels[failing[inverse]] if failing.any() else none)
        cond = e["kwargs"].get("row_condition")
        text = json.dumps(cond, sort_keys=True, default=str)
        if text not in masks:
            masks[text] = _condition_mask(cond, combos)
        domain = masks[text]
        null = combos[e["kwargs"]["column"]].isna().to_numpy()
        results.append(
            _counted(
                mem.templates[j],
                int(weight[domain].sum()),
                int(weight[domain & null].sum()),
                int(weight[failing].sum()),
            )
        )
    return rows, results


def _judge_other(
    eng: _Engine,
    group: RuleGroup,
    expectations: list[dict[str, Any]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[list[np.ndarray], list[Any]]:
    """Header, key and whole-frame rules (see the comment above ``RuleGroup``)."""
    if group.kind == "header":
        memo = _memo_key("header", expectations, parameters, frame, tuple(frame.columns))
        mem = eng.memory.get(memo)
        if mem is None:
            results = eng.run(frame.iloc[:0], expectations, parameters)
            mem = _Memory({}, np.zeros((0, 0), bool), [_sanitized_copy(r) for r in results])
            eng.memory[memo] = mem
        empty = np.zeros(0, dtype="int64")
        return [empty] * len(expectations), list(mem.templates)
    if group.kind == "key":
        cols = list(group.columns)
        all_missing = frame[cols].isna().all(axis=1).to_numpy()
        combination, n_keys = _combinations(frame, group.columns, factorized)
        repeats = (np.bincount(combination, minlength=n_keys) > 1)[combination] & ~all_missing
        memo = _memo_key("key", expectations, parameters, frame, group.columns)
        mem = eng.memory.get(memo)
        if mem is None or repeats.any():
            # GX judges every row whose key repeats; no repeat (the usual case) means no failure.
            results = eng.run(frame.loc[repeats, cols], expectations, parameters)
            rows = [
                np.asarray((r.result or {}).get("unexpected_index_list") or [], dtype="int64")
                for r in results
            ]
            mem = _Memory({}, np.zeros((0, 0), bool), [_sanitized_copy(r) for r in results])
            eng.memory[memo] = mem
        else:
            rows = [np.zeros(0, dtype="int64")] * len(expectations)
        missing = int(all_missing.sum())
        return rows, [
            _counted(t, len(frame), missing, len(x))
            for t, x in zip(mem.templates, rows, strict=True)
        ]
    results = eng.run(frame, expectations, parameters)
    rows = [
        np.asarray((r.result or {}).get("unexpected_index_list") or [], dtype="int64")
        for r in results
    ]
    return rows, [_sanitized_copy(r) for r in results]


def judge(
    frame: pd.DataFrame,
    suite_dict: dict[str, Any],
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]] | None = None,
) -> tuple[list[np.ndarray], list[Any]]:
    """Run the suite on ``frame`` the distinct-value way; per expectation (in suite order) the
    failing rows (index labels of ``frame``) and its whole-frame GX result (counts only).
    ``factorized``: column codes of this very frame already computed (see ``_combinations``)."""
    eng = _engine()
    expectations = suite_dict["expectations"]
    rows: list[np.ndarray] = [np.zeros(0, dtype="int64")] * len(expectations)
    results: list[Any] = [None] * len(expectations)
    factorized = {} if factorized is None else factorized
    for group in _groups_in_turn(plan_groups(suite_dict)):
        chosen = [expectations[i] for i in group.positions]
        if group.kind == "distinct":
            got_rows, got_results = _judge_distinct(
                eng, group, chosen, frame, parameters, factorized
            )
        else:
            got_rows, got_results = _judge_other(eng, group, chosen, frame, parameters, factorized)
        for i, r, res in zip(group.positions, got_rows, got_results, strict=True):
            rows[i], results[i] = r, res
    return rows, results


def _suite_result(
    results: list[Any], suite_name: str, run_name: str, run_time: dt.datetime
) -> tuple[Any, Any]:
    """(the suite-level GX result assembled from per-rule results, its store key)."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=run_name, run_time=run_time)
    good = sum(1 for r in results if r.success)
    batch_id = f"clinic_export-{suite_name}"
    suite_result = ExpectationSuiteValidationResult(
        success=good == len(results),
        results=results,
        suite_name=suite_name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": good,
            "unsuccessful_expectations": len(results) - good,
            "success_percent": 100.0 * good / len(results) if results else None,
        },
        meta={
            "run_id": run_id,
            "validation_time": run_time,
            "active_batch_definition": {
                "datasource_name": "clinic_export",
                "data_asset_name": suite_name,
            },
            "great_expectations_version": _gx_version(),
        },
        batch_id=batch_id,
    )
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
        run_id=run_id,
        batch_identifier=batch_id,
    )
    return suite_result, key


def _gx_version() -> str:
    import great_expectations as gx

    return str(gx.__version__)


_SITE = "alliance_watch"
_DOCS_CONTEXTS: dict[Path, Any] = {}


def _docs_context(docs_dir: Path) -> Any:
    """An ephemeral context whose results store and Data Docs site live under ``docs_dir``
    (one per folder per process: creating it costs more than writing a page)."""
    docs_dir = Path(docs_dir).resolve()  # GX needs an absolute base directory
    context = _DOCS_CONTEXTS.get(docs_dir)
    if context is not None:
        return context
    import great_expectations as gx

    docs_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    context.add_store(
        "sanitized_results",
        {
            "class_name": "ValidationResultsStore",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / "sanitized_results"),
            },
        },
    )
    context.validation_results_store_name = "sanitized_results"
    context.add_data_docs_site(
        site_name=_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / "site"),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    _DOCS_CONTEXTS[docs_dir] = context
    return context


def _page_path(docs_dir: Path, key: Any) -> Path:
    """Where the site builder writes the page of one validation result."""
    run_time = key.run_id.run_time.strftime("%Y%m%dT%H%M%S.%fZ")
    suite = key.expectation_suite_identifier.name
    return (
        docs_dir
        / "site"
        / "validations"
        / suite
        / key.run_id.run_name
        / run_time
        / f"{key.batch_identifier}.html"
    )


def _write_docs(docs_dir: Path, suite_result: Any, key: Any, build: bool) -> Path:
    """Store the sanitized result under ``docs_dir``; render its page and the index if
    ``build`` (else ``build_data_docs`` renders them later). Returns the page's path."""
    context = _docs_context(docs_dir)
    context.validation_results_store.set(key, suite_result)
    if build:
        context.build_data_docs(site_names=[_SITE], resource_identifiers=[key])
    return _page_path(docs_dir, key)


def build_data_docs(docs_dir: Path) -> Path:
    """Render the Data Docs site of every result stored under ``docs_dir``; return the index.

    Call once at the end of a run after validating with ``build_docs=False``: rendering is the
    per-file cost that grows with the site, so a run renders it once instead of per file.
    """
    docs_dir = Path(docs_dir)
    context = _docs_context(docs_dir)
    context.build_data_docs(site_names=[_SITE])
    return docs_dir / "site" / "index.html"


def _run_full(
    frame: pd.DataFrame, suite_dict: dict[str, Any], parameters: dict[str, Any]
) -> tuple[list[np.ndarray], list[Any]]:
    """The straightforward run: the whole suite on the whole frame (the reference the distinct
    path is tested against; ``validate(strategy="full")``)."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    asset = context.data_sources.add_pandas("clinic_export").add_dataframe_asset(suite_dict["name"])
    batch = asset.add_batch_definition_whole_dataframe("whole_file").get_batch(
        batch_parameters={"dataframe": frame}
    )
    results = batch.validate(
        _build_suite(gx, suite_dict),
        expectation_parameters=parameters,
        result_format=_RESULT_FORMAT,
    ).results
    by_rule = {_result_key(r): r for r in results}
    rows, out = [], []
    for e in suite_dict["expectations"]:
        r = by_rule[_rule_key(e["type"], e.get("meta"))]
        if (r.exception_info or {}).get("raised_exception"):
            raise ValidationEngineError(
                f"GX could not evaluate the rule {e.get('meta', {}).get('reason', '?')!r}; "
                "this is a pipeline fault, not a data problem"
            )
        index = (r.result or {}).get("unexpected_index_list") or []
        rows.append(np.asarray(index, dtype="int64"))
        out.append(_sanitized_copy(r))
    return rows, out


def validate(
    typed: pa.Table,
    dataset: str,
    cfg: ClinicConfig,
    docs_dir: Path | None = None,
    *,
    redaction: pd.DataFrame | None = None,
    file_name: str | None = None,
    raw: pa.Table | None = None,
    today: dt.date | None = None,
    min_date: dt.date = DEFAULT_MIN_DATE,
    suite_dir: Path = EXPECTATIONS_DIR,
    build_docs: bool = True,
    strategy: str = "distinct",
) -> tuple[pd.DataFrame, str | None]:
    """Validate a typed canonical table; return (RowIssues, Data Docs index path or None).

    RowIssues has one row per (row, reason); rows index into ``typed``. Cells in the
    ``redaction`` mask (from ``deid.scan_values``) are blanked before GX sees the table, and
    "blank"/"bad code" reasons that only echo that blanking are dropped. ``file_name`` (the name
    as delivered) labels the Data Docs page; default: the ``source_file`` column. ``raw`` (the
    reader's all-string table, same rows) makes exact-duplicate detection compare rows as
    delivered rather than as typed. ``today`` defaults to the current date in
    the clinic's timezone; dates after it or before ``min_date`` are invalid. With ``docs_dir``
    a Data Docs site for this file is written to ``docs_dir/<clinic>/<file>/`` (values
    withheld) and its index path returned; with ``build_docs=False`` the page is only stored and
    its future path returned, to be rendered by ``build_data_docs(docs_dir)`` once per run.
    ``strategy="full"`` runs the suite on the whole frame (the slow reference; same result).
    Raises ValidationEngineError when GX itself fails.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if typed.num_rows == 0:
        return empty_issues(), None
    if redaction is not None and len(redaction):
        typed = blank_cells(typed, redaction)
    today = today or _today_in(cfg)

    frames = [check_formula_or_markup(typed)]
    frame = _to_frame(typed, dataset)
    suite_dict = load_suite_dict(dataset, suite_dir)
    factorized: dict[str, tuple[np.ndarray, int]] = {}
    candidates = _copy_candidates(frame, _file_key(suite_dict), factorized)
    duplicates = (
        check_exact_duplicates(_duplicate_basis(typed, frame, raw, redaction, candidates))
        if len(candidates)
        else empty_issues()
    )
    frames.append(duplicates)
    if dataset == "measures":
        frames.append(check_total_consistency(frame))
        frames.append(check_item_step(frame))
    # Exact copies are counted as duplicates and not shown to GX, so the compound-key
    # expectation only fires on real conflicts.
    gx_frame = frame[~frame.index.isin(duplicates["row"])] if len(duplicates) else frame

    clinic = str(typed.column("clinic_id")[0]) if "clinic_id" in typed.column_names else "clinic"
    source = file_name or (
        str(typed.column("source_file")[0]) if "source_file" in typed.column_names else ""
    )
    run_name = f"{re.sub(r'[^a-z0-9_]', '_', clinic)}__{_safe_name(source)}"
    parameters = {
        "client_code_pattern": cfg.code_pattern_for("client_id"),
        "clinician_code_pattern": cfg.code_pattern_for("clinician_id"),
        "min_date": pd.Timestamp(min_date),
        "max_date": pd.Timestamp(today),
    }
    if strategy == "distinct":
        # the column codes of `frame` serve GX's frame when no copy was taken out
        failing, results = judge(
            gx_frame, suite_dict, parameters, factorized if gx_frame is frame else None
        )
    elif strategy == "full":
        failing, results = _run_full(gx_frame, suite_dict, parameters)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected 'distinct' or 'full'")
    for e, rows in zip(suite_dict["expectations"], failing, strict=True):
        if len(rows):
            meta = e["meta"]
            frames.append(_issues(rows, f"{meta['reason']}: {meta['explanation']}"))
    docs_path = None
    if docs_dir is not None:
        suite_result, key = _suite_result(
            results, suite_dict["name"], run_name, dt.datetime.now(dt.UTC)
        )
        docs_path = str(_write_docs(Path(docs_dir), suite_result, key, build_docs))
    issues = pd.concat([f for f in frames if len(f)] or [empty_issues()], ignore_index=True)
    if redaction is not None and len(redaction):
        issues = _drop_redaction_echoes(issues, redaction, typed.num_rows)
        issues = _key_conflicts_as_delivered(
            issues, frame, _file_key(suite_dict), raw, redaction, typed.num_rows
        )
    if cfg.allow_total_only:
        issues = _total_only_allowed(issues, frame, cfg.allow_total_only)
    issues = issues.drop_duplicates().sort_values(["row", "reason"], ignore_index=True)
    # counts and reason codes only: never a value
    log.info(
        "validated %s %s: %d rows, %d with issues",
        dataset,
        run_name,
        typed.num_rows,
        issues["row"].nunique(),
    )
    return issues, docs_path
