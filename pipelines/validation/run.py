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

import datetime as dt
import logging
import re
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.config import ClinicConfig
from pipelines.issues import blank_cells, empty_issues
from pipelines.validation.docs import safe_name, suite_result, write_docs
from pipelines.validation.engine import Verdicts, judge, run_full
from pipelines.validation.frames import to_frame
from pipelines.validation.rows import (
    check_exact_duplicates,
    check_formula_or_markup,
    check_item_step,
    check_total_consistency,
    copy_candidates,
    drop_redaction_echoes,
    duplicate_basis,
    file_key,
    key_conflicts_as_delivered,
    row_issues,
    total_only_allowed,
)
from pipelines.validation.suites import DATASETS, EXPECTATIONS_DIR, load_suite_dict

log = logging.getLogger(__name__)


DEFAULT_MIN_DATE = dt.date(1990, 1, 1)


def _today_in(cfg: ClinicConfig) -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(cfg.timezone)).date()


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
    frame = to_frame(typed, dataset)
    suite_dict = load_suite_dict(dataset, suite_dir)
    factorized: dict[str, tuple[np.ndarray, int]] = {}
    candidates = copy_candidates(frame, file_key(suite_dict), factorized)
    duplicates = (
        check_exact_duplicates(duplicate_basis(typed, frame, raw, redaction, candidates))
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
    run_name = f"{re.sub(r'[^a-z0-9_]', '_', clinic)}__{safe_name(source)}"
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
        failing, results = run_full(gx_frame, suite_dict, parameters)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected 'distinct' or 'full'")
    for e, rows in zip(suite_dict["expectations"], failing, strict=True):
        if len(rows):
            meta = e["meta"]
            frames.append(row_issues(rows, f"{meta['reason']}: {meta['explanation']}"))
    docs_path = None
    if docs_dir is not None:
        result, key = suite_result(results, suite_dict["name"], run_name, dt.datetime.now(dt.UTC))
        docs_path = str(write_docs(Path(docs_dir), result, key, build_docs))
    issues = pd.concat([f for f in frames if len(f)] or [empty_issues()], ignore_index=True)
    if redaction is not None and len(redaction):
        issues = drop_redaction_echoes(issues, redaction, typed.num_rows)
        issues = key_conflicts_as_delivered(
            issues, frame, file_key(suite_dict), raw, redaction, typed.num_rows
        )
    if cfg.allow_total_only:
        issues = total_only_allowed(issues, frame, cfg.allow_total_only)
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
