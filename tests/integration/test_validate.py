"""Row-level validation with real Great Expectations: every rule gives its reason on the right
row, good rows next to bad ones pass, duplicates split as documented, and Data Docs never show a
value."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.canonical import APPOINTMENTS_SCHEMA, MEASURES_SCHEMA
from pipelines.config import ClinicConfig
from pipelines.ingest.guard import scan_values
from pipelines.validation import (
    DUPLICATE_ROW_REASON,
    reasons_by_row,
    split_rows,
    validate,
)

CFG = ClinicConfig(clinic_id="riverside", timezone="Europe/Berlin", format="reference")
TODAY = dt.date(2025, 6, 30)

ITEMS = {"SRS": [9.0, 9.5, 8.0, 9.0], "PHQ-9": [1.0] * 9, "GAD-7": [2.0] * 7, "ORS": [5.0] * 4}
ITEMS["WAI-SR"] = [4.0] * 12
TOTALS = {"SRS": 35.5, "PHQ-9": 9.0, "GAD-7": 14.0, "ORS": 20.0, "WAI-SR": 4.0}


def measure(session: int, instrument: str = "PHQ-9", **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {f.name: None for f in MEASURES_SCHEMA}
    row.update(
        clinic_id="riverside",
        client_id="C0001",
        clinician_id="T01",
        session_date=dt.date(2025, 1, 1) + dt.timedelta(days=7 * session),
        session_number=session,
        instrument=instrument,
        instrument_version="1.0",
        total=TOTALS.get(instrument),
        source_file="measures.csv",
        source_line=session + 1,
    )
    for i, v in enumerate(ITEMS.get(instrument, []), 1):
        row[f"item_{i}"] = v
    row.update(kw)
    return row


def table(rows: list[dict[str, Any]], schema: pa.Schema = MEASURES_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def run(rows: list[dict[str, Any]], **kw: Any) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues, _ = validate(table(rows), "measures", CFG, today=TODAY, **kw)
    return issues


# One GX run over a file mixing good rows and one row per rule; each test checks its row.
CASES: dict[str, dict[str, Any]] = {
    "good_phq": measure(1),
    "good_srs": measure(1, "SRS"),
    "good_wai": measure(1, "WAI-SR"),
    "good_gad": measure(1, "GAD-7"),
    "good_ors": measure(1, "ORS"),
    "item_out_of_range": measure(2, item_3=4.0, total=12.0),
    "srs_item_out_of_range": measure(2, "SRS", item_2=10.5, total=36.5),
    "item_missing_phq": measure(3, item_9=None, total=None),
    "item_not_in_instrument": measure(4, "SRS", item_5=3.0),
    "total_inconsistent": measure(5, total=12.0),
    "total_out_of_range": measure(6, "WAI-SR", total=5.5),
    "unknown_instrument": measure(7, "XYZ", total=3.0),
    "future_date": measure(8, session_date=dt.date(2025, 7, 1)),
    "ancient_date": measure(9, session_date=dt.date(1989, 12, 31)),
    "session_zero": measure(0, client_id="C0002"),
    "bad_client_code": measure(10, client_id="C 0001!"),
    "formula": measure(11, clinician_id="=HYPERLINK(1)"),
    "markup": measure(12, client_id="<b>x</b>"),
    "missing_clinician": measure(13, clinician_id=None),
    "item_off_step": measure(14, item_1=1.5, total=9.5),
    "conflict_a": measure(15, total=9.0),
    "conflict_b": measure(15, total=9.0, session_date=dt.date(2025, 5, 1)),
    "exact_a": measure(16),
    "exact_b": measure(16, source_line=99),
}
EXPECTED = {
    "item_out_of_range": "item_out_of_range: item_3 outside 0-3",
    "srs_item_out_of_range": "item_out_of_range: item_2 outside 0-10",
    "item_missing_phq": "item_missing: item_9 is blank",
    "item_not_in_instrument": "item_not_in_instrument: item_5 is filled",
    "total_inconsistent": "total_inconsistent: total differs from the sum of the PHQ-9 items",
    "total_out_of_range": "total_out_of_range: total outside 1-5 for WAI-SR",
    "unknown_instrument": "unknown_instrument: instrument is not one of",
    "future_date": "session_date_in_future",
    "ancient_date": "session_date_too_old",
    "session_zero": "session_number_invalid",
    "bad_client_code": "invalid_code: client_id",
    "formula": "formula_or_markup: clinician_id",
    "markup": "formula_or_markup: client_id",
    "missing_clinician": "missing_value: clinician_id",
    "item_off_step": "item_off_step: item_1 is not a multiple of 1 for PHQ-9",
    "conflict_a": "duplicate_key_in_file",
    "conflict_b": "duplicate_key_in_file",
}
NAMES = list(CASES)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[str]], str | None]:
    docs = tmp_path_factory.mktemp("docs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues, path = validate(table(list(CASES.values())), "measures", CFG, docs, today=TODAY)
    by_row = reasons_by_row(issues)
    return {name: by_row.get(i, []) for i, name in enumerate(NAMES)}, path


@pytest.mark.parametrize("case", list(EXPECTED))
def test_each_rule_reports_its_reason_on_its_row(mixed, case: str) -> None:  # type: ignore[no-untyped-def]
    reasons, _ = mixed
    assert any(r.startswith(EXPECTED[case]) for r in reasons[case]), reasons[case]


@pytest.mark.parametrize("case", [n for n in NAMES if n.startswith("good_")] + ["exact_a"])
def test_good_rows_next_to_bad_ones_pass(mixed, case: str) -> None:  # type: ignore[no-untyped-def]
    reasons, _ = mixed
    assert reasons[case] == []


def test_missing_phq_item_gives_both_the_item_and_the_total_reason(mixed) -> None:  # type: ignore[no-untyped-def]
    reasons, _ = mixed
    codes = {r.split(":")[0] for r in reasons["item_missing_phq"]}
    assert codes == {"item_missing", "total_missing"}


def test_an_exact_copy_is_a_duplicate_not_a_conflict(mixed) -> None:  # type: ignore[no-untyped-def]
    reasons, _ = mixed
    assert reasons["exact_b"] == [DUPLICATE_ROW_REASON]


def test_split_counts_add_up(mixed) -> None:  # type: ignore[no-untyped-def]
    reasons, _ = mixed
    issues = pd.DataFrame(
        [(i, r) for i, n in enumerate(NAMES) for r in reasons[n]], columns=["row", "reason"]
    )
    split = split_rows(len(NAMES), issues)
    assert split.duplicate.sum() == 1
    assert split.loaded.sum() == 6  # five good rows and the first exact copy
    assert split.loaded.sum() + split.quarantined.sum() + split.duplicate.sum() == len(NAMES)
    assert not (split.loaded & split.quarantined).any()


def test_data_docs_page_is_written_and_holds_no_values(mixed) -> None:  # type: ignore[no-untyped-def]
    _, path = mixed
    assert path is not None and Path(path).exists()
    html = Path(path).read_text(encoding="utf-8")
    assert "expect_column_values_to_be_between" in html or "values must be" in html
    for value in ("C 0001!", "HYPERLINK", "<b>x</b>", "&lt;b&gt;x"):
        assert value not in html
    site = Path(path).parents[4]
    assert (site / "index.html").exists()


def test_today_parameter_decides_the_future() -> None:
    row = measure(1, session_date=dt.date(2025, 7, 1))
    assert run([row]).empty is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues, _ = validate(table([row]), "measures", CFG, today=dt.date(2025, 7, 1))
    assert issues.empty


def test_custom_code_pattern_is_applied() -> None:
    cfg = CFG.model_copy(update={"code_pattern": r"^RIV-\d{4}$"})
    rows = [measure(1, client_id="RIV-0001", clinician_id="RIV-0009"), measure(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues, _ = validate(table(rows), "measures", cfg, today=TODAY)
    assert set(issues["row"]) == {1}
    assert {r.split(":")[0] for r in issues["reason"]} == {"invalid_code"}


def test_redacted_cells_are_reported_once_and_never_reach_gx(tmp_path: Path) -> None:
    canary = "jane.canary@example.org"
    rows = [measure(1), measure(2, client_id=canary)]
    typed = table(rows)
    raw = pa.table(
        {
            c: pa.array([None if v is None else str(v) for v in typed.column(c).to_pylist()])
            for c in ("client_id", "clinician_id", "instrument")
        }
    )
    id_issues, mask = scan_values(raw, CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues, path = validate(
            typed, "measures", CFG, tmp_path, redaction=mask, today=TODAY, file_name="m.csv"
        )
    assert id_issues["row"].tolist() == [1]
    assert issues.empty  # the blanked client_id is not reported again as missing/invalid
    assert path is not None
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".html", ".json"):
            assert canary not in f.read_text(encoding="utf-8", errors="replace")


def test_appointments_suite() -> None:
    def appt(**kw: Any) -> dict[str, Any]:
        row = {
            "clinic_id": "riverside",
            "client_id": "C0001",
            "clinician_id": "T01",
            "appointment_date": dt.date(2025, 3, 1),
            "status": "attended",
            "source_file": "appointments.csv",
            "source_line": 2,
        }
        row.update(kw)
        return row

    rows = [
        appt(),
        appt(appointment_date=dt.date(2025, 3, 8), status="rescheduled"),
        appt(appointment_date=dt.date(2030, 1, 1)),
        appt(appointment_date=dt.date(2025, 3, 15), status="cancelled"),
        appt(appointment_date=dt.date(2025, 3, 15), status="no_show"),
        appt(appointment_date=dt.date(2025, 3, 22), client_id="@SUM(A1)"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issues, _ = validate(table(rows, APPOINTMENTS_SCHEMA), "appointments", CFG, today=TODAY)
    by_row = {k: {r.split(":")[0] for r in v} for k, v in reasons_by_row(issues).items()}
    assert by_row == {
        1: {"unknown_status"},
        2: {"appointment_date_in_future"},
        3: {"duplicate_key_in_file"},
        4: {"duplicate_key_in_file"},
        5: {"formula_or_markup", "invalid_code"},
    }


def test_empty_table_has_no_issues() -> None:
    issues, path = validate(table([]), "measures", CFG, today=TODAY)
    assert issues.empty and path is None


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        validate(table([measure(1)]), "sessions", CFG)


# --- The distinct-value engine gives exactly what a plain full-frame GX run gives -------------

_POOL: dict[str, list[Any]] = {
    "client_id": ["C0001", "C0002", "C 0003!", "=SUM(A1)", "<i>x</i>", "", None, "c-9_z"],
    "clinician_id": ["T01", "T02", None, "T 3", "@x"],
    "session_date": [
        dt.date(2025, 1, 1), dt.date(2025, 6, 30), dt.date(2025, 7, 1), dt.date(1989, 12, 31),
        dt.date(1990, 1, 1), None,
    ],
    "session_number": [1, 2, 3, 0, -1, None],
    "instrument": ["SRS", "WAI-SR", "ORS", "PHQ-9", "GAD-7", "XYZ", None, "phq-9"],
    "item": [0.0, 1.0, 2.5, 3.0, 4.0, 5.0, 10.0, 10.5, -0.0, -1.0, None, None, None],
    "total": [0.0, 9.0, 27.0, 40.0, 4.0, 5.5, None, -1.0],
}  # fmt: skip


def _random_table(seed: int, n: int) -> pa.Table:
    import numpy as np

    rng = np.random.default_rng(seed)

    def pick(values: list[Any]) -> list[Any]:
        return [values[i] for i in rng.integers(0, len(values), n)]

    cols: dict[str, list[Any]] = {k: pick(v) for k, v in _POOL.items() if k != "item"}
    rows = []
    for i in range(n):
        row = measure(1)
        row.update({k: v[i] for k, v in cols.items()}, source_line=i + 2)
        rows.append(row)
    items = {f"item_{k}": pick(_POOL["item"]) for k in range(1, 13)}
    keep_items = rng.random(n) < 0.5  # half the rows keep the instrument's valid items
    for i, row in enumerate(rows):
        if not keep_items[i]:
            row.update({c: v[i] for c, v in items.items()})
    # some exact copies and some key conflicts
    rows += [dict(r, source_line=r["source_line"] + 1000) for r in rows[: n // 10]]
    rows += [
        dict(r, total=None, source_line=r["source_line"] + 2000) for r in rows[n // 10 : n // 5]
    ]
    return table(rows)


def _gx_inputs(seed: int, n: int) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """A random frame without exact copies (as GX sees it), the run's parameters, the suite."""
    from pipelines.validation import to_frame
    from pipelines.validation.suites import load_suite_dict

    frame = to_frame(_random_table(seed, n), "measures")
    frame = frame.drop_duplicates(subset=[c for c in frame.columns if c != "source_line"])
    params = {
        "client_code_pattern": CFG.code_pattern_for("client_id"),
        "clinician_code_pattern": CFG.code_pattern_for("clinician_id"),
        "min_date": pd.Timestamp(dt.date(1990, 1, 1)),
        "max_date": pd.Timestamp(TODAY),
    }
    return frame, params, load_suite_dict("measures")


def _both(typed: pa.Table, **kw: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, _ = validate(typed, "measures", CFG, today=TODAY, **kw)
        full, _ = validate(typed, "measures", CFG, today=TODAY, strategy="full", **kw)
    return fast, full


def test_distinct_engine_equals_full_frame_gx_on_the_mixed_file() -> None:
    fast, full = _both(table(list(CASES.values())))
    pd.testing.assert_frame_equal(fast, full)
    assert len(fast) > 15


def test_distinct_engine_gives_the_same_data_docs_counts_as_full_gx() -> None:
    import numpy as np

    from pipelines.validation import judge, run_full

    frame, params, suite = _gx_inputs(11, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast_rows, fast = judge(frame, suite, params)
        full_rows, full = run_full(frame, suite, params)
    for e, a, b, ra, rb in zip(
        suite["expectations"], fast, full, fast_rows, full_rows, strict=True
    ):
        assert a.success == b.success, e["meta"]
        assert a.result == b.result, e["meta"]
        assert np.array_equal(np.sort(ra), np.sort(rb)), e["meta"]


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 120))
def test_distinct_engine_equals_full_frame_gx_on_random_malformed_frames(seed: int, n: int) -> None:
    fast, full = _both(_random_table(seed, n))
    pd.testing.assert_frame_equal(fast, full)


def test_deferred_data_docs_are_rendered_once_per_run(tmp_path: Path) -> None:
    from pipelines.validation import build_data_docs

    pages = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("a.csv", "b.csv"):
            _, page = validate(
                table([measure(1), measure(2, client_id="C 1")]),
                "measures",
                CFG,
                tmp_path,
                today=TODAY,
                file_name=name,
                build_docs=False,
            )
            assert page is not None and not Path(page).exists()
            pages.append(page)
        index = build_data_docs(tmp_path)
    assert index.exists() and all(Path(p).exists() for p in pages)
    html = Path(pages[1]).read_text(encoding="utf-8")
    assert "C 1" not in html


def test_gx_is_given_no_rule_with_a_row_condition_the_planner_can_evaluate() -> None:
    """The planner selects the rows of a simple row condition itself: GX judges the rules
    without their condition, and the Data Docs results still name the condition."""
    from pipelines import validation as v

    seen: list[dict[str, Any]] = []

    class Watching(v.Verdicts):
        def run(self, frame: Any, expectations: Any, parameters: Any) -> list[Any]:
            seen.extend(expectations)
            return super().run(frame, expectations, parameters)

    frame, params, suite = _gx_inputs(5, 40)
    assert any("row_condition" in e["kwargs"] for e in suite["expectations"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, results = v.judge(frame, suite, params, Watching())
    assert seen and not any("row_condition" in e["kwargs"] for e in seen)
    for e, r in zip(suite["expectations"], results, strict=True):
        assert r.expectation_config.kwargs.get("row_condition") == e["kwargs"].get("row_condition")


@pytest.mark.parametrize("uniques", [5, 400])  # a small table of codes, and hashing
def test_combinations_number_rows_as_pandas_groups_them(uniques: int) -> None:
    """Rows get the same number exactly when pandas groups them together (nulls alike)."""
    import numpy as np

    from pipelines.validation import combinations

    rng = np.random.default_rng(uniques)
    n = 3000
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, uniques, n).astype(float),
            "b": rng.choice([f"v{i}" for i in range(uniques)], n).astype(object),
            "c": rng.integers(0, uniques, n).astype(float),
        }
    )
    frame.loc[rng.random(n) < 0.1, "a"] = np.nan
    frame.loc[rng.random(n) < 0.1, "b"] = None
    number, n_combos = combinations(frame, ("a", "b", "c"), {})
    expected = frame.groupby(["a", "b", "c"], dropna=False, sort=False).ngroup().to_numpy()
    assert n_combos == expected.max() + 1
    pairs = set(zip(number.tolist(), expected.tolist(), strict=True))
    assert len(pairs) == n_combos  # a one-to-one match of the two numberings


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copies_are_looked_for_only_among_repeated_keys_and_all_are_found(seed: int) -> None:
    """Comparing only the rows whose key repeats finds exactly the copies a comparison of
    every row finds, on raw strings and on typed values."""
    from pipelines.validation import (
        check_exact_duplicates,
        copy_candidates,
        duplicate_basis,
        file_key,
        to_frame,
    )
    from pipelines.validation.suites import load_suite_dict

    typed = _random_table(seed, 120)
    raw = pa.table({c: typed.column(c).cast(pa.string()) for c in typed.column_names})
    frame = to_frame(typed, "measures")
    key = file_key(load_suite_dict("measures"))
    assert key == ("client_id", "episode_id", "session_number", "instrument")
    rows = copy_candidates(frame, key, {})
    assert 0 < len(rows) < len(frame)
    for basis_raw in (raw, None):
        every = check_exact_duplicates(duplicate_basis(typed, frame, basis_raw, None))
        some = check_exact_duplicates(duplicate_basis(typed, frame, basis_raw, None, rows))
        assert len(every) > 0
        pd.testing.assert_frame_equal(every, some)


def test_a_process_uses_the_verdicts_another_process_shared(tmp_path: Path) -> None:
    """Two processes preparing one run share GX verdicts: the second judges a frame the first
    has judged without asking GX again, and finds the same failing rows and counts."""
    import numpy as np

    from pipelines import validation as v

    frame, params, suite = _gx_inputs(7, 200)
    asked: list[int] = []

    class Counting(v.Verdicts):
        def run(self, *args: Any) -> list[Any]:
            asked.append(1)
            return super().run(*args)

    outcome = []
    for rank in (0, 1):
        # each "process" starts with an empty memory
        verdicts = Counting(v.Sharing(tmp_path / "verdicts", rank, 2))
        asked.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome.append((v.judge(frame, suite, params, verdicts), len(asked)))
    (rows_a, results_a), asked_a = outcome[0]
    (rows_b, results_b), asked_b = outcome[1]
    assert asked_a > 5
    assert asked_b <= 3  # header and key rules are not shared; every distinct group was
    for a, b, ra, rb in zip(results_a, results_b, rows_a, rows_b, strict=True):
        assert (a.success, a.result) == (b.success, b.result)
        assert np.array_equal(ra, rb)
