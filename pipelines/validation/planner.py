"""The rule planner: which frame each expectation of a suite runs on, and the rows of the simple row
conditions it evaluates itself (so GX is given the rules without them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.validation.frames import representatives, value_codes

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
    codes, width = value_codes(frame, col, factorized)
    rep = representatives(codes, width, everything)
    wanted = cond["parameter"] if cond["operator"] == "IN" else [cond["parameter"]]
    inside = np.zeros(width, dtype=bool)
    inside[1:] = frame[col].iloc[rep[1:]].isin(wanted).to_numpy(dtype=bool)
    return np.flatnonzero(inside[codes + 1])
