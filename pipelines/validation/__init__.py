"""Row-level validation of a typed canonical table with Great Expectations (through its public
API): the reviewed suites (`suites`), the rule planner (`planner`), the distinct-value engine and
its verdict memory (`engine`), the row checks beside GX (`rows`), Data Docs (`docs`) and the
entry point, `validate` (`run`)."""

from pipelines.validation.docs import build_data_docs
from pipelines.validation.engine import Sharing, ValidationEngineError, Verdicts, judge, run_full
from pipelines.validation.frames import combinations, to_frame
from pipelines.validation.planner import RuleGroup, plan_groups
from pipelines.validation.rows import (
    DUPLICATE_ROW,
    DUPLICATE_ROW_REASON,
    RowSplit,
    check_exact_duplicates,
    copy_candidates,
    duplicate_basis,
    file_key,
    reasons_by_row,
    split_rows,
)
from pipelines.validation.run import DEFAULT_MIN_DATE, validate

__all__ = [
    "DEFAULT_MIN_DATE",
    "DUPLICATE_ROW",
    "DUPLICATE_ROW_REASON",
    "RowSplit",
    "RuleGroup",
    "Sharing",
    "ValidationEngineError",
    "Verdicts",
    "build_data_docs",
    "check_exact_duplicates",
    "combinations",
    "copy_candidates",
    "duplicate_basis",
    "file_key",
    "judge",
    "plan_groups",
    "reasons_by_row",
    "run_full",
    "split_rows",
    "to_frame",
    "validate",
]
