"""The committed GX suites are exactly what the registry generates, and GX accepts them."""

from __future__ import annotations

import json
import warnings

import pytest

from pipelines import registry
from pipelines.validation.suites import (
    DATASETS,
    EXPECTATIONS_DIR,
    build_suite_dict,
    load_suite_dict,
    main,
    render_suite,
)


@pytest.mark.parametrize("dataset", DATASETS)
def test_committed_suite_equals_the_generated_one(dataset: str) -> None:
    committed = (EXPECTATIONS_DIR / f"{dataset}.json").read_text(encoding="utf-8")
    assert committed == render_suite(dataset), (
        f"expectations/{dataset}.json is stale: run python -m pipelines.validation.suites --write"
    )


def test_check_mode_reports_current_suites() -> None:
    assert main(["--check"]) == 0


def _by_reason(suite: dict, reason: str) -> list[dict]:
    return [e for e in suite["expectations"] if e["meta"]["reason"] == reason]


def test_item_ranges_match_the_registry() -> None:
    suite = load_suite_dict("measures")
    for code, ins in registry.INSTRUMENTS.items():
        for col in ins.item_columns:
            matching = [
                e
                for e in _by_reason(suite, "item_out_of_range")
                if e["kwargs"]["column"] == col
                and code in _instruments(e["kwargs"]["row_condition"])
            ]
            assert len(matching) == 1, (code, col)
            kw = matching[0]["kwargs"]
            assert (kw["min_value"], kw["max_value"]) == (ins.item_min, ins.item_max)


def _instruments(cond: dict) -> list[str]:
    p = cond["parameter"]
    return [p] if isinstance(p, str) else list(p)


def test_item_counts_match_the_registry() -> None:
    suite = load_suite_dict("measures")
    for code, ins in registry.INSTRUMENTS.items():
        required = {
            e["kwargs"]["column"]
            for e in _by_reason(suite, "item_missing")
            if code in _instruments(e["kwargs"]["row_condition"])
        }
        blank = {
            e["kwargs"]["column"]
            for e in _by_reason(suite, "item_not_in_instrument")
            if code in _instruments(e["kwargs"]["row_condition"])
        }
        assert required == set(ins.item_columns)
        assert blank == set(registry.ITEM_COLUMNS) - set(ins.item_columns)


def test_total_ranges_and_allowed_sets_match_the_registry() -> None:
    suite = load_suite_dict("measures")
    totals = {
        e["kwargs"]["row_condition"]["parameter"]: (
            e["kwargs"]["min_value"],
            e["kwargs"]["max_value"],
        )
        for e in _by_reason(suite, "total_out_of_range")
    }
    assert totals == {c: (i.total_min, i.total_max) for c, i in registry.INSTRUMENTS.items()}
    (known,) = _by_reason(suite, "unknown_instrument")
    assert known["kwargs"]["value_set"] == list(registry.INSTRUMENTS)
    (status,) = _by_reason(load_suite_dict("appointments"), "unknown_status")
    assert status["kwargs"]["value_set"] == list(registry.APPOINTMENT_STATUSES)


def test_a_registry_change_makes_the_committed_suite_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    changed = dataclasses.replace(registry.INSTRUMENTS["PHQ-9"], item_max=4.0)
    monkeypatch.setitem(registry.INSTRUMENTS, "PHQ-9", changed)
    assert render_suite("measures") != (EXPECTATIONS_DIR / "measures.json").read_text()


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_expectation_has_a_reason_and_the_suite_lists_extra_checks(dataset: str) -> None:
    suite = build_suite_dict(dataset)
    for e in suite["expectations"]:
        assert e["meta"]["reason"] and e["meta"]["explanation"]
        assert e["meta"]["reason"].replace("_", "").isalpha()
    assert "check_identifying_values" in suite["meta"]["extra_checks"]
    json.dumps(suite)  # plain JSON


@pytest.mark.parametrize("dataset", DATASETS)
def test_gx_accepts_the_suite(dataset: str) -> None:
    import great_expectations as gx

    from pipelines.validation.engine import _build_suite

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = _build_suite(gx, load_suite_dict(dataset))
    assert len(suite.expectations) == len(load_suite_dict(dataset)["expectations"])
