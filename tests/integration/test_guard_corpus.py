"""The de-identification guard measured as a classifier on a labelled corpus
(`tests/guard_corpus.py`): every pseudonym family passes, every identifier family is stopped in
every kind of column, and the code shapes clinics really use load completely through the real
pipeline. The 100,000-code figures are `benchmarks/bench_guard.py`'s; here a smaller sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from guard_corpus import (
    IDENTIFIER_FAMILIES,
    KINDS,
    LEGIT_OF_KIND,
    NOT_APPLICABLE,
    PHONE_FORMATS,
    PSEUDONYM_FAMILIES,
    SHAPE_PROTECTED,
    Family,
    config_for,
    judge,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines.config import ClinicConfig, parse_clinic_config
from pipelines.ingest.guard import identifying_headers, scan_values

N_CODES = 10_000  # per family; the benchmark draws 100,000
N_IDENTIFIERS = 1_000  # per family and column kind
CFG = ClinicConfig(clinic_id="corpus", timezone="Europe/Berlin", format="reference")


def _seed(name: str) -> int:
    return sum(name.encode())


@pytest.mark.parametrize("family", PSEUDONYM_FAMILIES, ids=lambda f: f.name)
def test_pseudonym_family_false_positives_at_most_one_in_ten_thousand(family: Family) -> None:
    values = family.make(np.random.default_rng(_seed(family.name)), N_CODES)
    for column_kind in ("codes",):
        flagged, _ = judge(values, column_kind, config_for(family))
        wrong = sorted({v for v, f in zip(values, flagged, strict=True) if f})
        assert flagged.sum() <= N_CODES // 10_000, wrong[:10]


@pytest.mark.parametrize("kind", list(LEGIT_OF_KIND))
def test_legitimate_dates_scores_and_labels_pass(kind: str) -> None:
    family = LEGIT_OF_KIND[kind]
    values = family.make(np.random.default_rng(_seed(family.name)), N_CODES)
    flagged, _ = judge(values, kind, CFG)
    assert not flagged.any(), sorted({v for v, f in zip(values, flagged, strict=True) if f})[:10]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family", IDENTIFIER_FAMILIES, ids=lambda f: f.name)
def test_identifier_family_is_stopped_in_every_column_kind(family: Family, kind: str) -> None:
    if (family.name, kind) in NOT_APPLICABLE:
        pytest.skip("a date in a date column is a session date to the guard")
    values = family.make(np.random.default_rng(_seed(family.name + kind)), N_IDENTIFIERS)
    flagged, exposed = judge(values, kind, CFG)
    assert not exposed.any(), sorted({v for v, e in zip(values, exposed, strict=True) if e})[:10]
    if (family.name, kind) not in SHAPE_PROTECTED:
        missed = sorted({v for v, f in zip(values, flagged, strict=True) if not f})
        assert not missed, missed[:10]


# ------------------------------------------------------------------- hypothesis strategies

CODE_SHAPES = st.one_of(
    st.from_regex(r"[A-Z]{1,3}-(199\d|20[0-3]\d)-\d{3,6}", fullmatch=True),
    st.from_regex(r"[A-Z]{1,3}\d{2}-\d{5,8}", fullmatch=True),
    st.from_regex(r"(HX|PSN|ID)[-_][0-9a-f]{8,32}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}", fullmatch=True),
    st.uuids().map(str),
    st.from_regex(r"[1-9]\d{0,2}-[1-9]\d{0,5}", fullmatch=True),
    st.from_regex(r"\d{4,12}", fullmatch=True),
    st.from_regex(r"[a-z]{1,8}_\d{1,6}", fullmatch=True),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(CODE_SHAPES, min_size=1, max_size=30))
@example(["A-1990-000", "300-100000"])  # a case number 3-6 digits long, not an Italian mobile
def test_generated_code_shapes_are_never_identifiers(codes: list[str]) -> None:
    table = pa.table({"client_id": pa.array(codes), "clinician_id": pa.array(codes)})
    issues, mask = scan_values(table, CFG)
    assert issues.empty, issues["reason"].tolist()


PHONES = st.tuples(st.sampled_from(PHONE_FORMATS), st.randoms(use_true_random=False)).map(
    lambda fr: "".join(
        str(fr[1].randint(0, 9)) if c == "X" else str(fr[1].randint(1, 9)) if c == "N" else c
        for c in fr[0]
    )
)


@settings(max_examples=150, deadline=None)
@given(PHONES, st.sampled_from(["client_id", "clinician_id", "session_date", "total", "status"]))
def test_generated_phone_numbers_are_caught_in_any_column(phone: str, column: str) -> None:
    issues, _ = scan_values(pa.table({column: pa.array([phone])}), CFG)
    assert issues["reason"].tolist() == [
        f"identifier_in_field: phone-number-like value in {column}"
    ], phone


# ------------------------------------------------------------------------- fixed examples


@pytest.mark.parametrize(
    "code",
    [
        "K-2025-58225",
        "S01-0012345",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "HX-6a05805975",
        "12-345",
        "1234567890",
        "0123456789",
        "2025-58225",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
)
def test_the_shapes_clinics_use_pass_the_guard_and_the_default_pattern(code: str) -> None:
    import re

    issues, _ = scan_values(pa.table({"client_id": pa.array([code])}), CFG)
    assert issues.empty, issues["reason"].tolist()
    assert re.search(CFG.code_pattern_for("client_id"), code)


@pytest.mark.parametrize(
    "stamp", ["2026-05-01 10:03:33", "2026-05-01T10:03:33Z", "2026-05-01 10:03", "2026-05-01"]
)
def test_a_timestamp_in_a_date_column_is_a_date(stamp: str) -> None:
    issues, _ = scan_values(pa.table({"session_date": pa.array([stamp])}), CFG)
    assert issues.empty
    cfg = CFG.model_copy(update={"date_format": "%d.%m.%Y"})
    issues, _ = scan_values(pa.table({"session_date": pa.array(["01.05.2026 10:03:33"])}), cfg)
    assert issues.empty


def test_a_declared_pattern_is_authoritative_for_what_it_matches_but_not_for_emails() -> None:
    cfg = CFG.model_copy(update={"client_code_pattern": r"^\d{3}-\d{3}-\d{4}$"})
    table = pa.table({"client_id": pa.array(["555-123-4567", "jane@example.org"])})
    issues, _ = scan_values(table, cfg)
    assert issues.to_dict("records") == [
        {"row": 1, "reason": "identifier_in_field: email-like value in client_id"}
    ]
    # the clinician column keeps the default: there it is a phone number
    issues, _ = scan_values(pa.table({"clinician_id": pa.array(["555-123-4567"])}), cfg)
    assert issues["reason"].tolist() == [
        "identifier_in_field: phone-number-like value in clinician_id"
    ]


def test_an_unanchored_declared_pattern_does_not_vouch_for_a_longer_value() -> None:
    cfg = CFG.model_copy(update={"code_pattern": r"\d{4}"})
    issues, _ = scan_values(pa.table({"client_id": pa.array(["+49 30 1234567"])}), cfg)
    assert issues["reason"].tolist() == [
        "identifier_in_field: phone-number-like value in client_id"
    ]


def test_code_pattern_sets_both_columns_and_each_key_one() -> None:
    both = parse_clinic_config(
        {"clinic_id": "cc", "timezone": "UTC", "format": "reference", "code_pattern": "^A\\d+$"},
        "cc.yaml",
    )
    assert both.code_pattern_for("client_id") == both.code_pattern_for("clinician_id") == "^A\\d+$"
    own = parse_clinic_config(
        {
            "clinic_id": "cc",
            "timezone": "UTC",
            "format": "reference",
            "code_pattern": "^A\\d+$",
            "client_code_pattern": "^\\d{10}$",
        },
        "cc.yaml",
    )
    assert own.code_pattern_for("client_id") == "^\\d{10}$"
    assert own.code_pattern_for("clinician_id") == "^A\\d+$"
    default = parse_clinic_config(
        {"clinic_id": "cc", "timezone": "UTC", "format": "reference"}, "cc.yaml"
    )
    assert default.declared_code_pattern("client_id") is None


@pytest.mark.parametrize(
    "header",
    [
        "redcap_event_name",
        "redcap_repeat_instance",
        "redcap_repeat_instrument",
        "redcap_data_access_group",
        "redcap_survey_identifier",
        "ResponseId",
        "RecordedDate",
        "StartDate",
        "EndDate",
        "Status",
        "Finished",
        "Progress",
        "Duration (in seconds)",
        "DistributionChannel",
        "UserLanguage",
        "instrument_name",
        "event_name",
    ],
)
def test_known_tool_columns_are_not_identifying(header: str) -> None:
    assert identifying_headers([header]) == []


@pytest.mark.parametrize(
    "header",
    [
        "LocationLatitude",
        "LocationLongitude",
        "IPAddress",
        "RecipientEmail",
        "RecipientFirstName",
        "RecipientLastName",
        "ExternalReference",
        "ExternalDataReference",
        "gps",
        "geo_location",
        "Kundenname",
        "username",
    ],
)
def test_location_network_recipient_and_reference_columns_are_identifying(header: str) -> None:
    assert identifying_headers([header]) == [header]


def test_a_clinic_declares_its_own_safe_columns() -> None:
    cfg = parse_clinic_config(
        {
            "clinic_id": "cc",
            "timezone": "UTC",
            "format": "reference",
            "safe_columns": ["Therapy Location"],
        },
        "cc.yaml",
    )
    assert identifying_headers(["therapy_location", "Location"], cfg.safe_columns) == ["Location"]


# --------------------------------------------------------------------- through the pipeline

SHAPES = {
    "case_year": ("K-{y}-{n:05d}", None),
    "site_prefix": ("S01-{n:07d}", None),
    "dotted": ("13.{y}.{n:05d}", r"^\d{2}\.\d{4}\.\d{5}$"),
    "uuid": ("{uuid}", None),
    "hex_prefixed": ("HX-{hex}", None),
    "redcap_dag": ("12-{n}", None),
    "ten_digits": ("{ten}", None),
}


def _codes(shape: str, n: int) -> list[str]:
    import uuid

    rng = np.random.default_rng(_seed(shape))
    template, _ = SHAPES[shape]
    out: set[str] = set()
    while len(out) < n:
        out.add(
            template.format(
                y=int(rng.integers(1995, 2031)),
                n=int(rng.integers(1, 100_000)),
                uuid=uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4),
                hex="".join(rng.choice(list("0123456789abcdef"), 10)),
                ten=int(rng.integers(10**9, 10**10)),
            )
        )  # fmt: skip
    return sorted(out)


def test_every_shape_loads_completely_with_the_reference_config(tmp_path: Path) -> None:
    """400 clients x 3 SRS sessions per code shape through the real reader, guard, GX and
    DuckDB: every row loads. One clinic with the 3-key reference config holds the shapes the
    default admits; the dotted shape's clinic declares its client pattern."""
    from conftest import REFERENCE_HEADER, reference_row

    from pipelines.ingest.run import ingest_all
    from pipelines.warehouse import open_warehouse

    config, landing = tmp_path / "config", tmp_path / "landing"
    (config / "clinics").mkdir(parents=True)
    files: dict[str, list[str]] = {}
    for shape, (_, pattern) in SHAPES.items():
        clinic = "dotted" if pattern else "reference"
        extra = f"client_code_pattern: '{pattern}'\n" if pattern else ""
        (config / "clinics" / f"{clinic}.yaml").write_text(
            f"clinic_id: {clinic}\ntimezone: Europe/Berlin\nformat: reference\n{extra}",
            encoding="utf-8",
        )
        files.setdefault(clinic, []).extend(
            reference_row(code, "T100A", f"2025-0{s}-1{i % 9}", s, "SRS", [9.1, 8.5, 9, 9.4])
            for i, code in enumerate(_codes(shape, 400))
            for s in (1, 2, 3)
        )
    for clinic, rows in files.items():
        (landing / clinic).mkdir(parents=True)
        (landing / clinic / "measures_2025.csv").write_text(
            "\n".join([REFERENCE_HEADER, *rows]) + "\n", encoding="utf-8"
        )
    results = {r.clinic_id: r for r in ingest_all(config, landing, tmp_path / "wh.duckdb")}
    for clinic, rows in files.items():
        r = results[clinic]
        assert (r.status, r.rows_in, r.rows_loaded) == ("loaded", len(rows), len(rows)), (
            r.error,
            r.top_reasons,
        )
    with open_warehouse(tmp_path / "wh.duckdb") as conn:
        loaded = {
            c for (c,) in conn.execute("select distinct client_id from measurements").fetchall()
        }
        assert conn.execute("select count(*) from measurements").fetchone() == (1200 * len(SHAPES),)
    for shape in SHAPES:
        assert set(_codes(shape, 400)) <= loaded, shape
