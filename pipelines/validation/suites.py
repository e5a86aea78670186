"""The Great Expectations suites, generated from the instrument registry.

Every range, item count and allowed set in ``expectations/*.json`` comes from
``pipelines.registry``; the committed JSON is the reviewed form of what this module builds, and a
test fails when the two disagree. Regenerate with ``python -m pipelines.validation.suites --write``.

Each expectation carries ``meta.reason`` (a stable reason code) and ``meta.explanation`` (a short
text without data values); together they become the row-level reason
``"<reason>: <explanation>"`` that the quarantine stores. Clinic-specific values are suite
parameters supplied at run time: ``client_code_pattern`` and ``clinician_code_pattern`` (the
clinic's code patterns, `ClinicConfig.code_pattern_for`),
``min_date`` and ``max_date`` (the plausible date window, ``max_date`` = today).

Some rules are cheaper in plain pyarrow/numpy than as GX expectations (they need several columns
at once, or must see the rows GX is not shown). They are listed in the suite's
``meta.extra_checks`` so that the suite documents every rule; ``pipelines.validation.rows`` implements
each as a function of the same name.

This module does not import Great Expectations: building the dicts is plain Python.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipelines.registry import (
    APPOINTMENT_STATUSES,
    INSTRUMENTS,
    ITEM_COLUMNS,
    MAX_ITEMS,
    REFERENCE_APPOINTMENT_COLUMNS,
    REFERENCE_MEASURE_COLUMNS,
)

DATASETS: tuple[str, ...] = ("measures", "appointments")
EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"

# Suite parameters filled in per run (GX "$PARAMETER" syntax).
CODE_PATTERN = {
    "client_id": {"$PARAMETER": "client_code_pattern"},
    "clinician_id": {"$PARAMETER": "clinician_code_pattern"},
}
MIN_DATE = {"$PARAMETER": "min_date"}
MAX_DATE = {"$PARAMETER": "max_date"}

# Rules implemented outside GX (pipelines.validation.rows / pipelines.ingest.guard), by function name.
MEASURE_EXTRA_CHECKS: dict[str, dict[str, str]] = {
    "check_identifying_values": {
        "reason": "identifier_in_field",
        "where": "pipelines.ingest.guard.scan_values (runs before GX; the values never reach GX)",
        "rule": "emails, phone numbers, SSN-like numbers, URLs, IP addresses, and person names "
        "in a code column quarantine the row; the cell is stored as [redacted]",
    },
    "check_formula_or_markup": {
        "reason": "formula_or_markup",
        "where": "pipelines.validation.rows",
        "rule": "a code or text cell starting with =, +, -, @ (spreadsheet formula) or holding "
        "HTML markup is rejected even when a clinic's code pattern would allow it",
    },
    "check_exact_duplicates": {
        "reason": "duplicate_row",
        "where": "pipelines.validation.rows",
        "rule": "a row identical to an earlier row of the same file is counted as a duplicate "
        "(rows_duplicate), not loaded twice and not quarantined; the first copy is validated "
        "like any other row",
    },
    "check_total_consistency": {
        "reason": "total_inconsistent",
        "where": "pipelines.validation.rows",
        "rule": "a delivered total differs from the registry scoring of the items (sum, or mean "
        "for WAI-SR) by more than Instrument.total_tolerance",
    },
    "check_item_step": {
        "reason": "item_off_step",
        "where": "pipelines.validation.rows",
        "rule": "an item is not a multiple of the instrument's smallest step (SRS/ORS 0.1, "
        "others whole numbers)",
    },
}
APPOINTMENT_EXTRA_CHECKS: dict[str, dict[str, str]] = {
    k: v
    for k, v in MEASURE_EXTRA_CHECKS.items()
    if k in ("check_identifying_values", "check_formula_or_markup", "check_exact_duplicates")
}


def _expectation(
    type_: str, kwargs: dict[str, Any], reason: str, explanation: str
) -> dict[str, Any]:
    return {
        "type": type_,
        "kwargs": kwargs,
        "meta": {"reason": reason, "explanation": explanation},
    }


def _instrument_condition(codes: list[str]) -> dict[str, Any]:
    """The serialized GX Condition selecting rows of the given instruments."""
    if len(codes) == 1:
        return {
            "type": "comparison",
            "column": {"name": "instrument"},
            "operator": "==",
            "parameter": codes[0],
        }
    return {
        "type": "comparison",
        "column": {"name": "instrument"},
        "operator": "IN",
        "parameter": codes,
    }


def _fmt(x: float) -> str:
    return f"{x:g}"


def _code_expectations() -> list[dict[str, Any]]:
    return [
        _expectation(
            "expect_column_values_to_match_regex",
            {"column": col, "regex": CODE_PATTERN[col]},
            "invalid_code",
            f"{col} does not match the clinic's code pattern",
        )
        for col in ("client_id", "clinician_id")
    ]


def _date_expectations(col: str) -> list[dict[str, Any]]:
    """Two rules, so the reason says which way the date is wrong."""
    return [
        _expectation(
            "expect_column_values_to_be_between",
            {"column": col, "max_value": MAX_DATE},
            f"{col}_in_future",
            f"{col} is after today (in the clinic's timezone)",
        ),
        _expectation(
            "expect_column_values_to_be_between",
            {"column": col, "min_value": MIN_DATE},
            f"{col}_too_old",
            f"{col} is before the earliest plausible date",
        ),
    ]


def _not_null(columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        _expectation(
            "expect_column_values_to_not_be_null",
            {"column": col},
            "missing_value",
            f"{col} is blank or could not be read",
        )
        for col in columns
    ]


def _measure_item_expectations() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    # Missing items: every item an instrument has must be filled (no silent imputation).
    for k in range(1, MAX_ITEMS + 1):
        col = ITEM_COLUMNS[k - 1]
        having = [c for c, ins in INSTRUMENTS.items() if ins.n_items >= k]
        out.append(
            _expectation(
                "expect_column_values_to_not_be_null",
                {"column": col, "row_condition": _instrument_condition(having)},
                "item_missing",
                f"{col} is blank but the instrument has it ({', '.join(having)}); every "
                "item is required, nothing is imputed",
            )
        )
    # Items an instrument does not have must be blank.
    for k in range(1, MAX_ITEMS + 1):
        col = ITEM_COLUMNS[k - 1]
        lacking = [c for c, ins in INSTRUMENTS.items() if ins.n_items < k]
        if not lacking:
            continue
        out.append(
            _expectation(
                "expect_column_values_to_be_null",
                {"column": col, "row_condition": _instrument_condition(lacking)},
                "item_not_in_instrument",
                f"{col} is filled but the instrument has fewer than {k} items "
                f"({', '.join(lacking)})",
            )
        )
    # Ranges, grouping instruments that share one so each item column needs one expectation.
    for k in range(1, MAX_ITEMS + 1):
        col = ITEM_COLUMNS[k - 1]
        groups: dict[tuple[float, float], list[str]] = {}
        for c, ins in INSTRUMENTS.items():
            if ins.n_items >= k:
                groups.setdefault((ins.item_min, ins.item_max), []).append(c)
        for (lo, hi), codes in groups.items():
            out.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    {
                        "column": col,
                        "min_value": lo,
                        "max_value": hi,
                        "row_condition": _instrument_condition(codes),
                    },
                    "item_out_of_range",
                    f"{col} outside {_fmt(lo)}-{_fmt(hi)} ({', '.join(codes)})",
                )
            )
    return out


def _measure_total_expectations() -> list[dict[str, Any]]:
    out = [
        _expectation(
            "expect_column_values_to_not_be_null",
            {"column": "total"},
            "total_missing",
            "total is blank and cannot be computed because an item is missing or unreadable",
        )
    ]
    for code, ins in INSTRUMENTS.items():
        out.append(
            _expectation(
                "expect_column_values_to_be_between",
                {
                    "column": "total",
                    "min_value": ins.total_min,
                    "max_value": ins.total_max,
                    "row_condition": _instrument_condition([code]),
                },
                "total_out_of_range",
                f"total outside {_fmt(ins.total_min)}-{_fmt(ins.total_max)} for {code} "
                f"({ins.scoring} of {ins.n_items} items)",
            )
        )
    return out


def _measures() -> dict[str, Any]:
    expectations: list[dict[str, Any]] = [
        _expectation(
            "expect_table_columns_to_match_set",
            {
                "column_set": list(REFERENCE_MEASURE_COLUMNS),
                "exact_match": False,
            },
            "missing_column",
            "a required column is absent",
        ),
        *_not_null(("client_id", "clinician_id", "session_date", "session_number", "instrument")),
        *_code_expectations(),
        _expectation(
            "expect_column_values_to_be_in_set",
            {"column": "instrument", "value_set": list(INSTRUMENTS)},
            "unknown_instrument",
            f"instrument is not one of {', '.join(INSTRUMENTS)}",
        ),
        _expectation(
            "expect_column_values_to_be_between",
            {"column": "session_number", "min_value": 1},
            "session_number_invalid",
            "session_number is below 1",
        ),
        *_date_expectations("session_date"),
        *_measure_item_expectations(),
        *_measure_total_expectations(),
        _expectation(
            "expect_compound_columns_to_be_unique",
            {"column_list": ["client_id", "episode_id", "session_number", "instrument"]},
            "duplicate_key_in_file",
            "another row of this file has the same client_id, episode_id, session_number and "
            "instrument with different values; every copy is held back",
        ),
    ]
    return {
        "name": "measures",
        "expectations": expectations,
        "meta": {
            "generated_by": "python -m pipelines.validation.suites --write (from pipelines.registry)",
            "dataset": "measures",
            "parameters": {
                "client_code_pattern": "the clinic config's client_code_pattern (or code_pattern)",
                "clinician_code_pattern": "the clinic config's clinician_code_pattern (or code_pattern)",
                "min_date": "earliest plausible session date (default 1990-01-01)",
                "max_date": "today in the clinic's timezone",
            },
            "extra_checks": MEASURE_EXTRA_CHECKS,
        },
    }


def _appointments() -> dict[str, Any]:
    expectations: list[dict[str, Any]] = [
        _expectation(
            "expect_table_columns_to_match_set",
            {
                "column_set": list(REFERENCE_APPOINTMENT_COLUMNS),
                "exact_match": False,
            },
            "missing_column",
            "a required column is absent",
        ),
        *_not_null(REFERENCE_APPOINTMENT_COLUMNS),
        *_code_expectations(),
        _expectation(
            "expect_column_values_to_be_in_set",
            {"column": "status", "value_set": list(APPOINTMENT_STATUSES)},
            "unknown_status",
            f"status is not one of {', '.join(APPOINTMENT_STATUSES)} "
            "(map the clinic's words in status_values)",
        ),
        *_date_expectations("appointment_date"),
        _expectation(
            "expect_compound_columns_to_be_unique",
            {"column_list": ["client_id", "appointment_date"]},
            "duplicate_key_in_file",
            "another row of this file has the same client_id and appointment_date with "
            "different values; every copy is held back",
        ),
    ]
    return {
        "name": "appointments",
        "expectations": expectations,
        "meta": {
            "generated_by": "python -m pipelines.validation.suites --write (from pipelines.registry)",
            "dataset": "appointments",
            "parameters": {
                "client_code_pattern": "the clinic config's client_code_pattern (or code_pattern)",
                "clinician_code_pattern": "the clinic config's clinician_code_pattern (or code_pattern)",
                "min_date": "earliest plausible appointment date (default 1990-01-01)",
                "max_date": "today in the clinic's timezone (appointments are past events)",
            },
            "extra_checks": APPOINTMENT_EXTRA_CHECKS,
        },
    }


def build_suite_dict(dataset: str) -> dict[str, Any]:
    """The suite for `dataset` as GX 1.x JSON, every number taken from the registry."""
    if dataset == "measures":
        return _measures()
    if dataset == "appointments":
        return _appointments()
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def suite_path(dataset: str, directory: Path = EXPECTATIONS_DIR) -> Path:
    return directory / f"{dataset}.json"


def render_suite(dataset: str) -> str:
    """The exact text of the committed suite file (stable key order, trailing newline)."""
    return json.dumps(build_suite_dict(dataset), indent=2, sort_keys=False) + "\n"


def load_suite_dict(dataset: str, directory: Path = EXPECTATIONS_DIR) -> dict[str, Any]:
    """The reviewed suite JSON as committed (what validation runs)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    data: dict[str, Any] = json.loads(suite_path(dataset, directory).read_text(encoding="utf-8"))
    return data


def write_suites(directory: Path = EXPECTATIONS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in DATASETS:
        path = suite_path(dataset, directory)
        path.write_text(render_suite(dataset), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.validation.suites",
        description="Generate the GX suites in expectations/ from the instrument registry.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite expectations/*.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a suite is stale")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_suites():
            print(f"wrote {path}")
        return 0
    stale = [
        d
        for d in DATASETS
        if not suite_path(d).exists()
        or suite_path(d).read_text(encoding="utf-8") != render_suite(d)
    ]
    for d in stale:
        print(
            f"{suite_path(d)} is stale; run python -m pipelines.validation.suites --write",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
