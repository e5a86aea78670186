"""The instrument registry is the single source of truth; its derived numbers must be right."""

from __future__ import annotations

import math

import pytest

from pipelines import registry


def test_reliable_change_follows_jacobson_truax() -> None:
    for ins in registry.INSTRUMENTS.values():
        se = ins.sd * math.sqrt(1 - ins.reliability)
        assert ins.reliable_change == pytest.approx(1.96 * math.sqrt(2) * se)


@pytest.mark.parametrize("code", ["ORS", "PHQ-9", "GAD-7"])
def test_derived_reliable_change_matches_published_value(code: str) -> None:
    ins = registry.INSTRUMENTS[code]
    assert ins.published_rc is not None
    assert ins.reliable_change == pytest.approx(ins.published_rc, abs=0.5)


def test_instrument_shapes_per_domain() -> None:
    srs, wai = registry.get("SRS"), registry.get("WAI-SR")
    assert (srs.n_items, srs.total_min, srs.total_max, srs.cutoff) == (4, 0, 40, 36)
    assert (wai.n_items, wai.total_min, wai.total_max, wai.scoring) == (12, 1, 5, "mean")
    assert wai.subscales == {"goal": (4, 6, 8, 11), "task": (1, 2, 10, 12), "bond": (3, 5, 7, 9)}
    subscale_items = sorted(i for items in wai.subscales.values() for i in items)
    assert subscale_items == list(range(1, 13))
    assert registry.get("PHQ-9").total_max == 27
    assert registry.get("GAD-7").total_max == 21
    assert registry.get("ORS").cutoff == 25


def test_concern_direction() -> None:
    assert registry.get("SRS").is_concern(35.9)
    assert not registry.get("SRS").is_concern(36.0)
    assert registry.get("PHQ-9").is_concern(10)
    assert not registry.get("PHQ-9").is_concern(9)


def test_unknown_instrument_names_the_allowed_codes() -> None:
    with pytest.raises(registry.UnknownInstrument, match="SRS, WAI-SR, ORS, PHQ-9, GAD-7"):
        registry.get("SRS-10")


def test_docs_instruments_table_is_current() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "instruments.md").read_text()
    assert registry.markdown_table() in doc, "regenerate the table in docs/instruments.md"
