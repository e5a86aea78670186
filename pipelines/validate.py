"""Row-level validation of a typed canonical table with Great Expectations.

``validate`` runs the reviewed suite (``expectations/<dataset>.json``, generated from the
registry by ``pipelines.suites``) through GX 1.x on a pandas frame built from the Arrow table,
and returns every failing row with every reason (``RowIssues``), plus the path of a Data Docs page
for the file when ``docs_dir`` is given.

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

import datetime as dt
import hashlib
import logging
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
        hit = pc.fill_null(pc.match_substring_regex(table.column(col), _FORMULA_OR_MARKUP), False)
        mask = np.asarray(hit.to_numpy(), dtype=bool)
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
    """Rows identical (in every column but the line number) to an earlier row of the file.

    Pass the raw string table's frame when there is one: two rows are copies only when they
    were delivered alike, not when two different unreadable values both became blank.
    """
    content = [c for c in frame.columns if c not in _PROVENANCE]
    dup = frame.duplicated(subset=content, keep="first").to_numpy()
    return _issues(np.flatnonzero(dup), DUPLICATE_ROW_REASON) if dup.any() else empty_issues()


def _duplicate_basis(
    typed: pa.Table, frame: pd.DataFrame, raw: pa.Table | None, redaction: pd.DataFrame | None
) -> pd.DataFrame:
    """The frame exact copies are judged on: raw strings if given, else the typed values with
    every blanked (redacted) cell made unique so a blanked row never "equals" another."""
    if raw is not None and raw.num_rows == typed.num_rows:
        cols = [c for c in raw.column_names if c not in _PROVENANCE]
        return raw.select(cols).to_pandas()
    basis = frame.copy()
    if redaction is not None and len(redaction):
        rows = np.unique(redaction["row"].to_numpy(dtype="int64"))
        basis["_redacted_row"] = -1
        basis.loc[rows, "_redacted_row"] = rows
    return basis


def _scored_total(items: np.ndarray, scoring: str) -> np.ndarray:
    return items.mean(axis=1) if scoring == "mean" else items.sum(axis=1)


def check_total_consistency(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose delivered total differs from the registry scoring of complete items."""
    frames = []
    instrument = frame["instrument"].to_numpy(dtype=object)
    total = frame["total"].to_numpy(dtype="float64")
    for code, ins in INSTRUMENTS.items():
        sel = instrument == code
        if not sel.any():
            continue
        items = frame.loc[sel, list(ins.item_columns)].to_numpy(dtype="float64")
        complete = ~np.isnan(items).any(axis=1)
        scored = _scored_total(np.nan_to_num(items), ins.scoring)
        off = complete & ~np.isnan(total[sel]) & (np.abs(scored - total[sel]) > ins.total_tolerance)
        if off.any():
            rows = frame.index.to_numpy()[sel][off]
            frames.append(
                _issues(
                    rows,
                    f"total_inconsistent: total differs from the {ins.scoring} of the {code} "
                    f"items by more than {ins.total_tolerance:.3g}",
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else empty_issues()


def check_item_step(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with an item that is not a multiple of its instrument's smallest step."""
    frames = []
    instrument = frame["instrument"].to_numpy(dtype=object)
    for code, ins in INSTRUMENTS.items():
        sel = instrument == code
        if not sel.any():
            continue
        for col in ins.item_columns:
            values = frame.loc[sel, col].to_numpy(dtype="float64")
            steps = values / ins.item_step
            off = ~np.isnan(values) & (np.abs(steps - np.round(steps)) > 1e-6)
            if off.any():
                frames.append(
                    _issues(
                        frame.index.to_numpy()[sel][off],
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
            frame[col] = pd.to_datetime(frame[col])
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


def _run_gx(
    frame: pd.DataFrame,
    suite_dict: dict[str, Any],
    parameters: dict[str, Any],
    docs_dir: Path | None,
    run_name: str,
) -> tuple[list[tuple[dict[str, Any], list[int], bool]], str | None]:
    """Run the suite on the frame; per expectation (meta, failing row indices, raised).

    The context is ephemeral: GX's raw results (which hold the failing values) live only in
    memory. For Data Docs, a sanitized copy is written to a file store under ``docs_dir`` and
    the site there is rebuilt, so its index lists every file validated into that folder.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    asset = context.data_sources.add_pandas("clinic_export").add_dataframe_asset(suite_dict["name"])
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_file")
    suite = context.suites.add(_build_suite(gx, suite_dict))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_dict["name"], data=batch_definition, suite=suite)
    )
    results = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={
            "result_format": "COMPLETE",
            "partial_unexpected_count": 0,
            "return_unexpected_index_query": False,
        },
        run_id=RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)),
    )
    out = []
    for r in results.results:
        raised = bool((r.exception_info or {}).get("raised_exception"))
        index = (r.result or {}).get("unexpected_index_list") or []
        meta = r.expectation_config.meta if r.expectation_config is not None else None
        out.append((dict(meta or {}), [int(i) for i in index], raised))
    if docs_dir is None:
        return out, None

    _sanitize(results)
    memory_store = context.validation_results_store
    keys = memory_store.list_keys()
    for key in keys:
        memory_store.remove_key(key)  # the raw result never outlives this call
    docs_dir.mkdir(parents=True, exist_ok=True)
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
    for key in keys:
        context.validation_results_store.set(key, results)
    context.add_data_docs_site(
        site_name="alliance_watch",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / "site"),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    context.build_data_docs(site_names=["alliance_watch"])
    pages = sorted((docs_dir / "site" / "validations").glob(f"**/{run_name}/**/*.html"))
    page = pages[-1] if pages else docs_dir / "site" / "index.html"
    return out, str(page) if page.exists() else None


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
    withheld) and its index path returned. Raises ValidationEngineError when GX itself fails.
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
    duplicates = check_exact_duplicates(_duplicate_basis(typed, frame, raw, redaction))
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
        "code_pattern": cfg.code_pattern,
        "min_date": pd.Timestamp(min_date),
        "max_date": pd.Timestamp(today),
    }
    outcomes, docs_path = _run_gx(
        gx_frame,
        load_suite_dict(dataset, suite_dir),
        parameters,
        None if docs_dir is None else Path(docs_dir),
        run_name,
    )
    for meta, rows, raised in outcomes:
        if raised:
            raise ValidationEngineError(
                f"GX could not evaluate the {dataset} rule {meta.get('reason', '?')!r}; "
                "this is a pipeline fault, not a data problem"
            )
        if rows:
            frames.append(_issues(np.asarray(rows), f"{meta['reason']}: {meta['explanation']}"))
    issues = pd.concat([f for f in frames if len(f)] or [empty_issues()], ignore_index=True)
    if redaction is not None and len(redaction):
        issues = _drop_redaction_echoes(issues, redaction, typed.num_rows)
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
