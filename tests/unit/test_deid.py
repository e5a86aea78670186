"""The de-identification guard: identifying headers reject a file, identifying values quarantine
a row with a reason that never contains the value, and the mask redacts exactly those cells."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import ClinicConfig
from pipelines.errors import FileRejected
from pipelines.ingest.guard import (
    REDACTED,
    check_header,
    identifying_headers,
    redact_cells,
    scan_values,
)
from pipelines.issues import blank_cells

CFG = ClinicConfig(clinic_id="riverside", timezone="Europe/Berlin", format="reference")
COLUMNS = ("client_id", "clinician_id", "session_date", "session_number", "instrument", "total")


def raw_table(*rows: dict[str, str]) -> pa.Table:
    base = {
        "client_id": "C0001",
        "clinician_id": "T01",
        "session_date": "2024-05-01",
        "session_number": "3",
        "instrument": "SRS",
        "total": "36.5",
    }
    full = [{**base, **r} for r in rows]
    table = pa.table({c: pa.array([r[c] for r in full], pa.string()) for c in COLUMNS})
    return table.append_column("source_line", pa.array(range(2, len(full) + 2), pa.int64()))


@pytest.mark.parametrize(
    "header",
    [
        "Name",
        "name",
        "Client Name",
        "client_name",
        "first_name",
        "FirstName",
        "lastName",
        "Surname",
        "Vorname",
        "Nachname",
        "email",
        "E-Mail",
        "E-Mail-Adresse",
        "e_mail",
        "Phone",
        "phone_number",
        "Telefon",
        "Telefonnummer",
        "Mobile",
        "Fax",
        "Address",
        "Adresse",
        "Street",
        "Straße",
        "City",
        "Ort",
        "ZIP",
        "zip_code",
        "Postcode",
        "PLZ",
        "SSN",
        "social_security_number",
        "MRN",
        "Medical Record Number",
        "DOB",
        "date_of_birth",
        "Geburtsdatum",
        "birthdate",
        "Age",
        "Alter",
        "Notes",
        "Notizen",
        "comments",
        "Kommentar",
        "free_text",
        "Bemerkungen",
        "URL",
        "Website",
        "IP",
        "ip_address",
        "  NAME  ",
        "Prénom",
    ],
)
def test_identifying_header_rejects_the_file_and_names_the_header(header: str) -> None:
    with pytest.raises(FileRejected) as err:
        check_header(["client_id", "clinician_id", header, "session_date"], "measures")
    assert err.value.code == "identifying_column"
    assert header.strip() in str(err.value)
    assert "client_id" not in str(err.value).split("column(s)")[1].split(";")[0]


@pytest.mark.parametrize(
    "header",
    [
        "client_id",
        "clinician_id",
        "Client ID",
        "ClientId",
        "session_date",
        "Session Date",
        "appointment_date",
        "session_number",
        "status",
        "Status",
        "instrument",
        "instrument_name",
        "item_1",
        "item_12",
        "total",
        "Total",
        "Termin",
        "Sitzung",
        "stage",
        "language",
        "recipient_group",
        "srs_1",
        "phq9_total",
        "clinic",
    ],
)
def test_canonical_and_harmless_headers_pass(header: str) -> None:
    check_header([header], "measures")  # no exception
    assert identifying_headers([header]) == []


def test_header_check_lists_every_offending_header() -> None:
    found = identifying_headers(["client_id", "Name", "total", "Notizen", "E-Mail"])
    assert found == ["Name", "Notizen", "E-Mail"]


CANARIES = {
    "email-like": "jane.doe@example.org",
    "phone-number-like": "+49 30 1234 5678",
    "SSN-like": "123-45-6789",
    "URL-like": "https://example.com/patient/17",
    "IP-address-like": "192.168.10.23",
}


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("kind", list(CANARIES))
def test_identifying_value_in_any_field_is_reported_without_the_value(
    kind: str, column: str
) -> None:
    value = CANARIES[kind]
    table = raw_table({}, {column: value}, {})
    issues, mask = scan_values(table, CFG)
    assert issues["row"].tolist() == [1]
    (reason,) = issues["reason"].tolist()
    assert reason == f"identifier_in_field: {kind} value in {column}"
    assert value not in reason
    assert mask.to_dict("records") == [{"row": 1, "column": column}]


def test_ipv6_and_www_urls_are_caught() -> None:
    table = raw_table({"clinician_id": "2001:db8::8a2e:370:7334"}, {"instrument": "www.clinic.de"})
    issues, _ = scan_values(table, CFG)
    assert sorted(issues["reason"]) == [
        "identifier_in_field: IP-address-like value in clinician_id",
        "identifier_in_field: URL-like value in instrument",
    ]


@pytest.mark.parametrize("name", ["John Smith", "Anna-Lena Müller", "Smith, John", "jane doe"])
def test_a_person_name_where_a_code_belongs_is_caught(name: str) -> None:
    issues, mask = scan_values(raw_table({"client_id": name}), CFG)
    assert issues["reason"].tolist() == ["identifier_in_field: person-name-like value in client_id"]
    assert mask["column"].tolist() == ["client_id"]


def test_free_text_in_a_non_code_field_is_caught() -> None:
    issues, _ = scan_values(
        raw_table({"instrument": "client was upset today about her mother"}), CFG
    )
    assert issues["reason"].tolist() == ["identifier_in_field: free-text value in instrument"]


@pytest.mark.parametrize(
    "values",
    [
        {"client_id": "C0001", "session_date": "2024-05-01"},
        {"client_id": "RIV-000123", "session_date": "01.05.2024"},
        {"client_id": "123456789012", "session_date": "2024/05/01"},
        {"client_id": "c_17", "total": "3.75"},
        {"instrument": "PHQ-9", "total": "27"},
        {"instrument": "WAI-SR", "total": "4.25"},
        {"session_number": "12", "clinician_id": "dr_mueller"},
    ],
)
def test_legitimate_values_are_not_flagged(values: dict[str, str]) -> None:
    issues, mask = scan_values(raw_table(values), CFG)
    assert issues.empty and mask.empty


def test_a_clinic_s_own_long_status_label_is_not_free_text() -> None:
    label = "Absage durch die Praxis erfolgt"
    cfg = CFG.model_copy(update={"status_values": {label: "cancelled_by_clinic"}})
    table = raw_table({"instrument": label.upper()})
    assert scan_values(table, cfg)[0].empty
    assert not scan_values(table, CFG)[0].empty


def test_custom_code_pattern_allowing_spaces_keeps_spaced_codes() -> None:
    cfg = CFG.model_copy(update={"code_pattern": r"^[A-Z]{2} \d{3}$"})
    issues, _ = scan_values(raw_table({"client_id": "AB 123"}), cfg)
    assert issues.empty


def test_several_identifiers_in_one_row_give_several_reasons() -> None:
    issues, mask = scan_values(
        raw_table({"client_id": "jane@example.org", "clinician_id": "Dr Jane Roe"}), CFG
    )
    assert set(issues["reason"]) == {
        "identifier_in_field: email-like value in client_id",
        "identifier_in_field: person-name-like value in clinician_id",
    }
    assert set(mask["column"]) == {"client_id", "clinician_id"}


def test_redact_and_blank_replace_exactly_the_masked_cells() -> None:
    table = raw_table({}, {"client_id": "jane@example.org"}, {"total": "555-12-3456"})
    _, mask = scan_values(table, CFG)
    redacted = redact_cells(table, mask)
    assert redacted.column("client_id").to_pylist() == ["C0001", REDACTED, "C0001"]
    assert redacted.column("total").to_pylist() == ["36.5", "36.5", REDACTED]
    blanked = blank_cells(table, mask)
    assert blanked.column("client_id").to_pylist() == ["C0001", None, "C0001"]
    assert blanked.schema == table.schema
    assert "jane@example.org" not in str(redacted.to_pylist())


def test_scan_is_vectorized_over_large_tables() -> None:
    n = 200_000
    table = pa.table(
        {
            "client_id": pa.array([f"C{i:06d}" for i in range(n)]),
            "session_date": pa.array(["2024-05-01"] * n),
            "total": pa.array(["12"] * n),
        }
    )
    issues, mask = scan_values(table, CFG)
    assert issues.empty and mask.empty


_VALUE_POOL = [
    "C0001", "C0002", "jane.doe@example.org", "+49 30 1234 5678", "123-45-6789",
    "https://x.example.com", "10.0.0.1", "Jane Doe", "Doe, Jane", "one two three four five six",
    "SRS", "2024-05-01", "3", None, "",
]  # fmt: skip


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(*[st.sampled_from(_VALUE_POOL)] * 3), min_size=1, max_size=40))
def test_scan_of_a_table_equals_the_scan_of_each_row_alone(rows: list[tuple]) -> None:
    """Values are judged once per distinct value; the result is what a per-cell scan gives."""
    cols = ("client_id", "instrument", "status")
    tbl = pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(cols)})
    issues, mask = scan_values(tbl, CFG)
    expected_issues, expected_mask = [], []
    for i in range(len(rows)):
        one_issues, one_mask = scan_values(tbl.slice(i, 1), CFG)
        expected_issues += [(i, r) for r in one_issues["reason"]]
        expected_mask += [(i, c) for c in one_mask["column"]]
    assert sorted(zip(issues["row"], issues["reason"], strict=True)) == sorted(expected_issues)
    assert sorted(zip(mask["row"], mask["column"], strict=True)) == sorted(expected_mask)
