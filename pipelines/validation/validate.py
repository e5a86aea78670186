"""Row-level validation of a typed canonical table with Great Expectations.

``validate`` runs the reviewed suite (``expectations/<dataset>.json``, generated from the
registry by ``pipelines.validation.suites``) through GX 1.x on a pandas frame built from the Arrow table,
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

import copy
import datetime as dt
import hashlib
import json
import logging
import pickle
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import ClinicConfig
from pipelines.ingest.guard import blank_cells, cell_masks, empty_issues
from pipelines.registry import INSTRUMENTS, ITEM_COLUMNS
from pipelines.validation.suites import DATASETS, EXPECTATIONS_DIR, load_suite_dict

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
# Every per-row expectation of the suite (not_null, be_null, between, match_regex, in_set) is a
# pure function of the one column it reads, within the rows its row condition selects. The
# simple row conditions (a column equal to a value, or in a list) are evaluated here, by the
# planner's groups, and GX is given the rules without them: for each condition, GX judges the
# distinct values each column holds in the rows inside it (5 instruments x ~100 item values, a
# few hundred dates, thousands of codes), and each unexpected value is mapped back to every row
# that holds it. GX remains the engine that decides pass/fail: every verdict comes from a GX run
# of the reviewed expectation on exactly that value. Verdicts are remembered in a ``Verdicts``
# object (keyed by the rule, its condition, the run parameters and the column type), so the parts
# of a large file and the files of one run send GX only the values it has not judged yet.
#
# Two expectations are not per-row and run differently:
# * expect_table_columns_to_match_set reads only the header: run on the frame with no rows.
# * expect_compound_columns_to_be_unique: a row can fail only when another row has the same key,
#   so GX runs on exactly the rows whose key repeats (a superset of the failures; a row outside it
#   is unique in the whole frame, and one inside has all its key twins with it).
# Anything else (a new type, a row condition the planner cannot evaluate) runs on the whole
# frame, with its row condition, as a plain GX run would.
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
# Verdicts remembered per rule set and column before that memory is cleared (bounds memory).
_MAX_REMEMBERED = 2_000_000


@dataclass(frozen=True)
class RuleGroup:
    """Expectations run together in one GX run: ``kind`` says on which frame.

    ``distinct``: the rules of one row ``condition`` (its JSON text; None for rules without
    one), evaluated by the planner: GX sees the distinct values of each of ``columns`` among the
    rows inside the condition, and the rules without their condition; ``header``: the frame with
    no rows; ``key``: the rows whose ``columns`` key repeats; ``full``: the whole frame.
    """

    kind: str
    columns: tuple[str, ...]
    positions: tuple[int, ...]
    condition: str | None = None


def _simple_condition(cond: Any) -> bool:
    """True for the condition shapes the planner evaluates (column == value, column IN list)."""
    return (
        isinstance(cond, dict)
        and cond.get("type") == "comparison"
        and isinstance(cond.get("column"), dict)
        and isinstance(cond["column"].get("name"), str)
        and set(cond["column"]) == {"name"}
        and cond.get("operator") in ("==", "IN")
        and (cond["operator"] == "==" or isinstance(cond.get("parameter"), list))
        and set(cond) == {"type", "column", "operator", "parameter"}
    )


def plan_groups(suite_dict: dict[str, Any]) -> list[RuleGroup]:
    """Group the suite's expectations by the frame they run on (see the comment above).

    Per-row expectations with no row condition or a simple one are grouped by their condition;
    the planner, not GX, decides which rows a condition selects."""
    by_condition: dict[str | None, list[int]] = {}
    groups: list[RuleGroup] = []
    full: list[int] = []
    expectations = suite_dict["expectations"]
    for i, e in enumerate(expectations):
        kw = e["kwargs"]
        cond = kw.get("row_condition")
        if e["type"] in _HEADER_TYPES:
            groups.append(RuleGroup("header", (), (i,)))
        elif e["type"] in _KEY_TYPES and cond is None:
            groups.append(RuleGroup("key", tuple(kw["column_list"]), (i,)))
        elif e["type"] in _PER_ROW_TYPES and (cond is None or _simple_condition(cond)):
            text = None if cond is None else json.dumps(cond, sort_keys=True)
            by_condition.setdefault(text, []).append(i)
        else:
            full.append(i)
    for text, positions in by_condition.items():
        columns = tuple(dict.fromkeys(expectations[i]["kwargs"]["column"] for i in positions))
        groups.append(RuleGroup("distinct", columns, tuple(positions), text))
    if full:
        groups.append(RuleGroup("full", (), tuple(full)))
    return groups


def without_condition(expectation: dict[str, Any]) -> dict[str, Any]:
    """The rule as GX is given it once the planner has selected its rows."""
    kwargs = {k: v for k, v in expectation["kwargs"].items() if k != "row_condition"}
    return {**expectation, "kwargs": kwargs}


def _codes(
    frame: pd.DataFrame, col: str, factorized: dict[str, tuple[np.ndarray, int]]
) -> tuple[np.ndarray, int]:
    """(every row's value number in ``col``, -1 for null; how many numbers there are, + 1)."""
    if col not in factorized:
        found, uniques = pd.factorize(frame[col], use_na_sentinel=True)
        factorized[col] = (np.asarray(found, dtype="int64"), len(uniques) + 1)
    return factorized[col]


def _combinations(
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
        codes, width = _codes(frame, col, factorized)
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


def _representatives(codes: np.ndarray, width: int, rows: np.ndarray) -> np.ndarray:
    """For every value number (+ 1), a row of ``rows`` that holds it."""
    rep = np.zeros(width, dtype="int64")
    rep[codes[rows] + 1] = rows
    return rep


def condition_rows(
    cond: dict[str, Any] | None,
    frame: pd.DataFrame,
    factorized: dict[str, tuple[np.ndarray, int]],
) -> np.ndarray:
    """Positions of the rows of ``frame`` inside a simple row condition (as GX selects them:
    the column's value equals the parameter or is in the list; a null is never inside)."""
    everything = np.arange(len(frame), dtype="int64")
    if cond is None:
        return everything
    col = cond["column"]["name"]
    codes, width = _codes(frame, col, factorized)
    rep = _representatives(codes, width, everything)
    wanted = cond["parameter"] if cond["operator"] == "IN" else [cond["parameter"]]
    inside = np.zeros(width, dtype=bool)
    inside[1:] = frame[col].iloc[rep[1:]].isin(wanted).to_numpy(dtype=bool)
    return np.flatnonzero(inside[codes + 1])


def _value_keys(values: pd.Series) -> list[Any]:
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


@dataclass
class _Memory:
    """Verdicts GX gave for the rules on one column: one row per judged value, one bool per
    rule, and one sanitized GX result per rule (the Data Docs template)."""

    index: dict[Any, int]  # value key -> row of ``failed``
    failed: np.ndarray  # (values, rules)
    templates: list[Any]


class _Engine:
    """One GX context, reused for every frame validated with one ``Verdicts``."""

    def __init__(self) -> None:
        import great_expectations as gx

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
        asset = self.context.data_sources.add_pandas("clinic_export").add_dataframe_asset("frames")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("frame")
        self.suites: dict[str, Any] = {}

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
        results = batch.validate(
            suite, expectation_parameters=parameters, result_format=_RESULT_FORMAT
        ).results
        return _in_suite_order(results, expectations)


def _in_suite_order(results: list[Any], expectations: list[dict[str, Any]]) -> list[Any]:
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


def _rule_key(type_: str, meta: Any) -> str:
    # Type and meta identify a rule: every expectation's meta carries its own explanation
    # (kwargs are not compared because GX fills the suite parameters into its copy).
    return json.dumps([type_, dict(meta or {})], sort_keys=True, default=str)


def _result_key(result: Any) -> str:
    config = result.expectation_config
    return _rule_key(config.type, config.meta)


@dataclass(frozen=True)
class Sharing:
    """Verdicts exchanged by the ``processes`` preparing one run's files, through files in
    ``folder`` (the run's stage folder: it holds values, codes among them, and is deleted with
    the run); this process is ``rank``."""

    folder: Path
    rank: int
    processes: int


class Verdicts:
    """What GX decided, remembered for the frames validated with this object.

    A verdict depends only on the value, the rule (its condition included), the run's
    parameters and the column's type, which the memory key holds; so one object serves every
    file of a run and every part of a file, and only values not judged yet go to GX. With
    ``sharing``, each process of a run starts with a different share of the rule groups,
    publishes what GX told it, and reads what the others published before asking GX itself:
    a peer's verdict is the one GX would give here."""

    def __init__(self, sharing: Sharing | None = None) -> None:
        self.sharing = sharing
        self.memory: dict[str, _Memory] = {}
        self._engine: _Engine | None = None
        self._seen: dict[Path, int] = {}  # peer file -> the modification time last read
        if sharing is not None:
            sharing.folder.mkdir(parents=True, exist_ok=True)

    @property
    def engine(self) -> _Engine:
        if self._engine is None:
            self._engine = _Engine()  # creating a GX context costs ~0.1 s: once per object
        return self._engine

    def run(
        self, frame: pd.DataFrame, expectations: list[dict[str, Any]], parameters: dict[str, Any]
    ) -> list[Any]:
        """GX results for ``expectations`` on ``frame``, in the order given."""
        return self.engine.run(frame, expectations, parameters)

    def in_turn(self, groups: list[RuleGroup]) -> list[RuleGroup]:
        """The groups, starting at this process's share when verdicts are shared."""
        share = self.sharing
        if share is None or share.processes < 2:
            return groups
        k = len(groups) * share.rank // share.processes
        return groups[k:] + groups[:k]

    def _path(self, memo: str, rank: int) -> Path:
        assert self.sharing is not None
        name = f"{hashlib.sha256(memo.encode()).hexdigest()[:32]}.{rank}.pickle"
        return self.sharing.folder / name

    def read_peers(self, memo: str, n_rules: int) -> _Memory | None:
        """The memory of ``memo`` with what the other processes published for it added."""
        mem = self.memory.get(memo)
        share = self.sharing
        if share is None:
            return mem
        for rank in range(share.processes):
            if rank == share.rank:
                continue
            path = self._path(memo, rank)
            try:
                stamp = path.stat().st_mtime_ns
                if self._seen.get(path) == stamp:
                    continue
                peer: _Memory = pickle.loads(path.read_bytes())  # noqa: S301 - our own run's files
            except (OSError, EOFError, pickle.UnpicklingError):
                continue  # not published yet
            self._seen[path] = stamp
            if mem is None:
                mem = _Memory({}, np.zeros((0, n_rules), dtype=bool), peer.templates)
            missing = [(k, i) for k, i in peer.index.items() if k not in mem.index]
            if missing:
                start = len(mem.failed)
                mem.index.update({k: start + n for n, (k, _) in enumerate(missing)})
                mem.failed = np.vstack([mem.failed, peer.failed[[i for _, i in missing]]])
        if mem is not None:
            self.memory[memo] = mem
        return mem

    def remember(self, memo: str, mem: _Memory) -> None:
        self.memory[memo] = mem
        if self.sharing is None:
            return
        path = self._path(memo, self.sharing.rank)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(mem, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)  # a reader sees the old or the new file, never half of one


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


def _sanitized_copy(result: Any, rule: dict[str, Any] | None = None) -> Any:
    """A GX result with only its counts; with ``rule``, labelled with that rule as reviewed
    (its row condition included), for the Data Docs page."""
    out = copy.copy(result)
    out.result = {k: v for k, v in (result.result or {}).items() if k in _SAFE_RESULT_KEYS}
    if rule is not None and "row_condition" in rule["kwargs"]:
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        config = result.expectation_config
        out.expectation_config = ExpectationConfiguration(
            type=config.type,
            kwargs={**config.kwargs, "row_condition": rule["kwargs"]["row_condition"]},
            meta=config.meta,
        )
    return out


def _memo_key(
    kind: str,
    expectations: list[dict[str, Any]],
    parameters: dict[str, Any],
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    condition: str | None = None,
) -> str:
    return json.dumps(
        [
            kind,
            expectations,
            condition,
            {k: str(v) for k, v in sorted(parameters.items())},
            [(c, str(frame[c].dtype)) for c in columns],
        ],
        sort_keys=True,
        default=str,
    )


def _index_list(result: Any) -> np.ndarray:
    return np.asarray((result.result or {}).get("unexpected_index_list") or [], dtype="int64")


@dataclass
class _Column:
    """One column of a distinct group: its values inside the condition and what is known."""

    rules: list[int]  # positions in the group's rules
    codes: np.ndarray  # value number (+ 1) of every row inside the condition
    present: np.ndarray  # the value numbers (+ 1) found there
    weight: np.ndarray  # rows per value number (+ 1)
    rep: np.ndarray  # a row per value number (+ 1)
    keys: list[Any]  # a key per present value
    memo: str
    failed: np.ndarray  # (present values, rules)
    new: np.ndarray  # positions in ``present`` GX has not judged


def _judge_distinct(
    verdicts: Verdicts,
    group: RuleGroup,
    rules: list[dict[str, Any]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[list[np.ndarray], list[Any]]:
    """Failing rows (index labels of ``frame``) and a whole-frame result per rule of the group."""
    cond = None if group.condition is None else json.loads(group.condition)
    inside = condition_rows(cond, frame, factorized)
    given = [without_condition(e) for e in rules]
    columns: dict[str, _Column] = {}
    for col in group.columns:
        at = [j for j, e in enumerate(rules) if e["kwargs"]["column"] == col]
        all_codes, width = _codes(frame, col, factorized)
        codes = all_codes[inside] + 1
        weight = np.bincount(codes, minlength=width)
        present = np.flatnonzero(weight)
        rep = _representatives(all_codes, width, inside)
        keys = _value_keys(frame[col].iloc[rep[present]])
        memo = _memo_key(
            "distinct", [given[j] for j in at], parameters, frame, (col,), group.condition
        )
        failed = np.zeros((len(present), len(at)), dtype=bool)
        known = _recall(verdicts.memory.get(memo), keys, failed)
        if not known.all():
            known = _recall(verdicts.read_peers(memo, len(at)), keys, failed)
        columns[col] = _Column(
            at, codes, present, weight, rep, keys, memo, failed, np.flatnonzero(~known)
        )
    unjudged = any(len(c.new) for c in columns.values())
    if unjudged or any(c.memo not in verdicts.memory for c in columns.values()):
        # one GX run for the group: each column holds its values not judged yet, repeated to
        # the longest column's length (a repeat's verdict is its value's and is not read)
        length = max((len(c.new) for c in columns.values()), default=0)
        data = {}
        for col, c in columns.items():
            chosen = c.present[c.new] if len(c.new) else c.present[:1]
            data[col] = frame[col].iloc[c.rep[np.resize(chosen, length)]].reset_index(drop=True)
        results = verdicts.run(pd.DataFrame(data), given, parameters)
        for c in columns.values():
            for jj, j in enumerate(c.rules):
                unexpected = _index_list(results[j])
                unexpected = unexpected[unexpected < len(c.new)]
                c.failed[c.new[unexpected], jj] = True
            templates = [_sanitized_copy(results[j], rules[j]) for j in c.rules]
            mem = verdicts.memory.get(c.memo)
            if mem is None or len(mem.index) + len(c.new) > _MAX_REMEMBERED:
                mem = _Memory({}, np.zeros((0, len(c.rules)), dtype=bool), templates)
            start = len(mem.failed)
            mem.index.update({c.keys[i]: start + n for n, i in enumerate(c.new.tolist())})
            mem.failed = np.vstack([mem.failed, c.failed[c.new]])
            mem.templates = templates
            verdicts.remember(c.memo, mem)
    labels = frame.index.to_numpy(dtype="int64")[inside]
    none = np.zeros(0, dtype="int64")
    rows: list[np.ndarray] = [none] * len(rules)
    results_out: list[Any] = [None] * len(rules)
    for c in columns.values():
        templates = verdicts.memory[c.memo].templates
        for jj, j in enumerate(c.rules):
            failing = np.zeros(len(c.weight), dtype=bool)
            failing[c.present[c.failed[:, jj]]] = True
            rows[j] = labels[failing[c.codes]] if failing.any() else none
            results_out[j] = _counted(
                templates[jj],
                len(inside),
                int(c.weight[0]),
                int(c.weight[failing].sum()),
            )
    return rows, results_out


def _recall(mem: _Memory | None, keys: list[Any], failed: np.ndarray) -> np.ndarray:
    """Fill ``failed`` with the remembered verdicts of ``keys``; which keys were remembered."""
    if mem is None:
        return np.zeros(len(keys), dtype=bool)
    found = np.fromiter((mem.index.get(k, -1) for k in keys), dtype="int64", count=len(keys))
    known = found >= 0
    failed[known] = mem.failed[found[known]]
    return known


def _judge_other(
    verdicts: Verdicts,
    group: RuleGroup,
    expectations: list[dict[str, Any]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[list[np.ndarray], list[Any]]:
    """Header, key and whole-frame rules (see the comment above ``RuleGroup``)."""
    memory = verdicts.memory
    if group.kind == "header":
        memo = _memo_key("header", expectations, parameters, frame, tuple(frame.columns))
        mem = memory.get(memo)
        if mem is None:
            results = verdicts.run(frame.iloc[:0], expectations, parameters)
            mem = _Memory({}, np.zeros((0, 0), bool), [_sanitized_copy(r) for r in results])
            memory[memo] = mem
        empty = np.zeros(0, dtype="int64")
        return [empty] * len(expectations), list(mem.templates)
    if group.kind == "key":
        cols = list(group.columns)
        all_missing = frame[cols].isna().all(axis=1).to_numpy()
        combination, n_keys = _combinations(frame, group.columns, factorized)
        repeats = (np.bincount(combination, minlength=n_keys) > 1)[combination] & ~all_missing
        memo = _memo_key("key", expectations, parameters, frame, group.columns)
        mem = memory.get(memo)
        if mem is None or repeats.any():
            # GX judges every row whose key repeats; no repeat (the usual case) means no failure.
            results = verdicts.run(frame.loc[repeats, cols], expectations, parameters)
            rows = [_index_list(r) for r in results]
            mem = _Memory({}, np.zeros((0, 0), bool), [_sanitized_copy(r) for r in results])
            memory[memo] = mem
        else:
            rows = [np.zeros(0, dtype="int64")] * len(expectations)
        missing = int(all_missing.sum())
        return rows, [
            _counted(t, len(frame), missing, len(x))
            for t, x in zip(mem.templates, rows, strict=True)
        ]
    results = verdicts.run(frame, expectations, parameters)
    return [_index_list(r) for r in results], [_sanitized_copy(r) for r in results]


def judge(
    frame: pd.DataFrame,
    suite_dict: dict[str, Any],
    parameters: dict[str, Any],
    verdicts: Verdicts | None = None,
    factorized: dict[str, tuple[np.ndarray, int]] | None = None,
) -> tuple[list[np.ndarray], list[Any]]:
    """Run the suite on ``frame`` the distinct-value way; per expectation (in suite order) the
    failing rows (index labels of ``frame``) and its whole-frame GX result (counts only), as a
    whole-frame GX run gives them. ``verdicts``: what GX already decided (a fresh memory when
    None); ``factorized``: column codes of this very frame already computed."""
    verdicts = Verdicts() if verdicts is None else verdicts
    expectations = suite_dict["expectations"]
    rows: list[np.ndarray] = [np.zeros(0, dtype="int64")] * len(expectations)
    results: list[Any] = [None] * len(expectations)
    factorized = {} if factorized is None else factorized
    for group in verdicts.in_turn(plan_groups(suite_dict)):
        chosen = [expectations[i] for i in group.positions]
        judge_group = _judge_distinct if group.kind == "distinct" else _judge_other
        got_rows, got_results = judge_group(verdicts, group, chosen, frame, parameters, factorized)
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
    ordered = _in_suite_order(results, suite_dict["expectations"])
    return [_index_list(r) for r in ordered], [_sanitized_copy(r) for r in ordered]


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
    verdicts: Verdicts | None = None,
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
    ``verdicts`` remembers what GX decided across the calls that share it (a fresh memory when
    None).
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
            gx_frame, suite_dict, parameters, verdicts, factorized if gx_frame is frame else None
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
