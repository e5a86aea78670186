"""Readers: each clinic's own format -> the canonical rows, with every problem reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import ClinicConfig, parse_clinic_config
from pipelines.errors import FileRejected
from pipelines.ingest.read import canonicalize, read_raw

WIDE: dict[str, Any] = {
    "clinic_id": "wide_clinic",
    "timezone": "America/Chicago",
    "format": "custom",
    "layout": "wide",
    "date_format": "%m/%d/%Y",
    "columns": {
        "client_id": "Client ID",
        "clinician_id": "Clinician",
        "session_date": "Session Date",
        "session_number": "Session #",
    },
    "wide": {
        "blocks": {
            "SRS": {"items": ["S1", "S2", "S3", "S4"], "total": "SRS Total"},
            "ORS": {"items": ["O1", "O2", "O3", "O4"], "total": "ORS Total"},
        }
    },
    "appointment_columns": {
        "client_id": "Client ID",
        "clinician_id": "Clinician",
        "appointment_date": "Appt Date",
        "status": "Status",
    },
    "status_values": {"Show": "attended", "No Show": "no_show"},
}
EURO: dict[str, Any] = {
    "clinic_id": "euro",
    "timezone": "Europe/Berlin",
    "format": "custom",
    "delimiter": ";",
    "decimal": ",",
    "encoding": "latin-1",
    "date_format": "%d.%m.%Y",
    "columns": {
        "client_id": "Klienten-Kürzel",
        "clinician_id": "Behandler",
        "session_date": "Datum",
        "session_number": "Sitzung",
        "instrument": "Bogen",
        "item_1": "I1",
        "item_2": "I2",
        "item_3": "I3",
        "item_4": "I4",
        "total": "Summe",
    },
}
HEADER = '"Client ID","Clinician","Session Date","Session #",S1,S2,S3,S4,SRS Total,O1,O2,O3,O4,ORS Total\n'


def cfg(data: dict[str, Any]) -> ClinicConfig:
    return parse_clinic_config(data, f"{data['clinic_id']}.yaml")


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_wide_lines_melt_to_one_row_per_administered_instrument(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "s.csv",
        HEADER
        + "C0001,T01,03/04/2025,1,9.1,9,8.5,9.9,36.5,4,5,6,7,22\n"
        + "C0002,T01,03/05/2025,2,10,10,10,10,40,,,,,\n"  # ORS not administered
        + "C0003,T02,03/06/2025,1,9,,9,9,,1,1,1,1,\n",  # SRS item 2 missing: kept, not imputed
    )
    raw = read_raw(p, "measures", cfg(WIDE))
    assert raw.table.column("source_line").to_pylist() == [2, 2, 3, 4, 4]
    typed, issues = canonicalize(raw, cfg(WIDE))
    assert issues.empty
    rows = typed.to_pylist()
    assert [(r["client_id"], r["instrument"]) for r in rows] == [
        ("C0001", "SRS"),
        ("C0001", "ORS"),
        ("C0002", "SRS"),
        ("C0003", "SRS"),
        ("C0003", "ORS"),
    ]
    assert rows[0]["session_date"] == dt.date(2025, 3, 4)
    assert rows[0]["total"] == 36.5 and rows[1]["total"] == 22.0
    assert rows[3]["item_2"] is None and rows[3]["total"] is None  # validation rejects it
    assert rows[4]["total"] == 4.0  # blank total computed from complete items


def test_mapped_column_missing_names_the_config_key(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "s.csv",
        HEADER.replace('"Client ID"', "Client") + "x,T01,03/04/2025,1" + ",1" * 10 + "\n",
    )
    with pytest.raises(FileRejected) as e:
        read_raw(p, "measures", cfg(WIDE))
    assert e.value.code == "missing_column"
    assert "columns.client_id maps to 'Client ID', which the file does not have" in str(e.value)
    p2 = write(
        tmp_path,
        "t.csv",
        HEADER.replace(",O4,", ",O_4,") + "C1,T01,03/04/2025,1" + ",1" * 10 + "\n",
    )
    with pytest.raises(FileRejected, match=r"wide.blocks.ORS: item\(s\) 4 \('O4'\)"):
        read_raw(p2, "measures", cfg(WIDE))


def test_wide_missing_columns_name_the_wide_key_one_line_per_set(tmp_path: Path) -> None:
    """Issue #17: a wide block's missing headers were each told "(or map it under columns:)",
    which the validator refuses for a wide layout; now one line per block, naming wide.blocks."""
    header = HEADER.replace(",O4,", ",O_4,").replace(",O1,", ",O_1,").replace(",S2,", ",S_2,")
    p = write(tmp_path, "t.csv", header + "C1,T01,03/04/2025,1" + ",1" * 10 + "\n")
    with pytest.raises(FileRejected) as e:
        read_raw(p, "measures", cfg(WIDE))
    msg = str(e.value)
    assert "map it under columns" not in msg
    assert msg.count("wide.blocks.ORS") == 2 and msg.count("wide.blocks.SRS") == 2
    assert "item(s) 1 ('O1'), 4 ('O4')" in msg
    assert len(msg.split(" | ")) == 2  # one part per block
    # several missing canonical columns: one line, naming the key that fixes it
    p = write(tmp_path, "u.csv", "A,B\n1,2\n")
    with pytest.raises(FileRejected) as e:
        read_raw(p, "measures", cfg({"clinic_id": "x1", "timezone": "UTC", "format": "custom"}))
    msg = str(e.value)
    assert msg.count("missing;") == 1 and "under columns:" in msg
    assert "instrument: <code>" in msg and "session_number_from" in msg


def test_european_export_decimal_comma_latin1_and_dates(tmp_path: Path) -> None:
    text = (
        "Klienten-Kürzel;Behandler;Datum;Sitzung;Bogen;I1;I2;I3;I4;Summe\n"
        "C0001;T01;23.11.2024;1;SRS;9,1;8,7;9;9,5;36,3\n"
        "C0001;T01;30.11.2024;2;ORS;4,4;5;6,1;7;\n"
    )
    p = write(tmp_path, "Messwerte.csv", text, "latin-1")
    raw = read_raw(p, "measures", cfg(EURO))
    typed, issues = canonicalize(raw, cfg(EURO))
    assert issues.empty
    rows = typed.to_pylist()
    assert rows[0]["item_1"] == 9.1 and rows[0]["total"] == 36.3
    assert rows[0]["session_date"] == dt.date(2024, 11, 23)
    assert rows[1]["total"] == 22.5  # computed, one decimal, exact


def test_unparseable_values_are_row_issues_without_the_value(tmp_path: Path) -> None:
    text = (
        "Klienten-Kürzel;Behandler;Datum;Sitzung;Bogen;I1;I2;I3;I4;Summe\n"
        "C0001;T01;2024-11-23;1;SRS;9;9;9;9;36\n"
        "C0001;T01;24.11.2024;2.5;SRS;9;9;9;9;36\n"
        "C0001;T01;25.11.2024;3;SRS;neun;9;9;9;36\n"
        "C0001;T01;31.02.2025;4;SRS;9;9;9;9;36\n"
    )
    raw = read_raw(write(tmp_path, "m.csv", text, "latin-1"), "measures", cfg(EURO))
    typed, issues = canonicalize(raw, cfg(EURO))
    assert typed.num_rows == 4  # nothing dropped
    by_row = issues.groupby("row")["reason"].apply(list).to_dict()
    assert by_row[0][0].startswith("bad_date:")
    assert by_row[1][0].startswith("bad_session_number:")
    assert by_row[2][0].startswith("not_a_number: item_1")
    assert by_row[3][0].startswith("bad_date:")
    for reason in issues["reason"]:
        assert "neun" not in reason and "2024-11-23" not in reason and "2.5" not in reason


def test_status_words_map_case_insensitively(tmp_path: Path) -> None:
    text = '"Client ID",Clinician,Appt Date,Status\nC1,T01,03/04/2025,Show\nC1,T01,03/11/2025,no show\nC1,T01,03/18/2025,cancelled\n'
    raw = read_raw(write(tmp_path, "a.csv", text), "appointments", cfg(WIDE))
    typed, issues = canonicalize(raw, cfg(WIDE))
    assert typed.column("status").to_pylist() == ["attended", "no_show", "cancelled"]
    assert typed.column("appointment_date").to_pylist()[0] == dt.date(2025, 3, 4)


def test_parquet_with_typed_columns_reads_as_text_first(tmp_path: Path) -> None:
    data = {
        "clinic_id": "pq",
        "timezone": "UTC",
        "format": "custom",
        "file_type": "parquet",
        "columns": {"client_id": "client", "instrument": "measure", "total": "score"},
        "instrument_values": {"PHQ9": "PHQ-9"},
    }
    t = pa.table(
        {
            "client": ["C1", "C2"],
            "clinician_id": ["T01", "T01"],
            "session_date": pa.array([dt.date(2025, 1, 6), dt.date(2025, 1, 7)], pa.date32()),
            "session_number": pa.array([1, 1], pa.int32()),
            "measure": ["PHQ9", "PHQ9"],
            **{f"item_{i}": pa.array([1, 2], pa.int8()) for i in range(1, 10)},
            "score": pa.array([9.0, None], pa.float64()),
        }
    )
    p = tmp_path / "m.parquet"
    pq.write_table(t, p)
    raw = read_raw(p, "measures", cfg(data))
    assert all(pa.types.is_string(f.type) for f in raw.table.schema if f.name != "source_line")
    typed, issues = canonicalize(raw, cfg(data))
    assert issues.empty
    assert typed.column("instrument").to_pylist() == ["PHQ-9", "PHQ-9"]
    assert typed.column("total").to_pylist() == [9.0, 18.0]
    assert typed.column("instrument_version").to_pylist() == ["1.0", "1.0"]


def test_reference_clinic_with_three_key_config(tmp_path: Path) -> None:
    ref = cfg({"clinic_id": "ref", "timezone": "UTC", "format": "reference"})
    cols = "client_id,clinician_id,session_date,session_number,instrument," + ",".join(
        f"item_{i}" for i in range(1, 13)
    )
    text = f"{cols},total\nC1,T01,2025-01-06,1,WAI-SR,4,4,5,4,3,4,4,5,4,4,3,4,\n"
    typed, issues = canonicalize(
        read_raw(write(tmp_path, "measures_1.csv", text), "measures", ref), ref
    )
    assert issues.empty
    assert typed.column("total").to_pylist() == [round(48 / 12, 2)]


REF_HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)
REF_ROW = "C0001,T01,2026-10-01,1,SRS,9.5,9.1,9.0,9.8" + "," * 8 + ",37.4"
THREE_KEYS = {"clinic_id": "ref_clinic", "timezone": "UTC", "format": "reference"}


def test_reference_clinic_may_deliver_parquet_with_the_three_key_config(tmp_path: Path) -> None:
    names = REF_HEADER.split(",")
    values = REF_ROW.split(",")
    table = pa.table(
        {n: pa.array([v or None], pa.string()) for n, v in zip(names, values, strict=True)}
    )
    path = tmp_path / "measures_2026-10.parquet"
    pq.write_table(table, path)
    raw = read_raw(path, "measures", cfg(THREE_KEYS))
    typed, issues = canonicalize(raw, cfg(THREE_KEYS))
    assert issues.empty
    assert typed.column("total").to_pylist() == [37.4]
    assert typed.column("session_date").to_pylist() == [dt.date(2026, 10, 1)]


def test_malformed_line_is_set_aside_by_its_real_line_number(tmp_path: Path) -> None:
    text = (
        "\n".join([REF_HEADER, REF_ROW, REF_ROW.replace("C0001", "C0002") + ",extra", REF_ROW])
        + "\n"
    )
    path = write(tmp_path, "measures_bad.csv", text)
    raw = read_raw(path, "measures", cfg(THREE_KEYS))
    assert raw.malformed_lines == [3]
    assert raw.table.column("source_line").to_pylist() == [2, 4]


def test_a_header_that_looks_like_a_value_is_never_echoed(tmp_path: Path) -> None:
    text = "\n".join([REF_HEADER + ",quincy.adams@mail.invalid", REF_ROW + ",x"]) + "\n"
    raw = read_raw(write(tmp_path, "measures_shifted.csv", text), "measures", cfg(THREE_KEYS))
    assert raw.ignored_columns == ["<column 19>"]


def test_values_are_read_as_delivered_not_as_numbers(tmp_path: Path) -> None:
    """A code of digits keeps its leading zeros (0012 and 12 are two clients), and numbers keep
    the text they were delivered as; nothing is inferred as a number before the guard sees it."""
    text = (
        "client_id,clinician_id,session_date,session_number,instrument,"
        "item_1,item_2,item_3,item_4,total\n"
        "0012,007,2024-11-23,01,SRS,9.50,9,9,9,36.5\n"
        "12,7,2024-11-23,1,SRS,9.5,9,9,9,36.50\n"
    )
    reference = {"clinic_id": "zeros", "timezone": "UTC", "format": "reference"}
    raw = read_raw(write(tmp_path, "m.csv", text), "measures", cfg(reference))
    assert raw.table.column("client_id").to_pylist() == ["0012", "12"]
    assert raw.table.column("clinician_id").to_pylist() == ["007", "7"]
    assert raw.table.column("item_1").to_pylist() == ["9.50", "9.5"]
    typed, issues = canonicalize(raw, cfg(reference))
    assert issues.empty
    assert typed.column("client_id").to_pylist() == ["0012", "12"]
    assert typed.column("session_number").to_pylist() == [1, 1]


@pytest.mark.parametrize("newline", ["\r", "\r\n"], ids=["cr_only", "crlf"])
def test_old_mac_and_windows_line_endings_read_like_unix_ones(tmp_path: Path, newline: str) -> None:
    """Excel's "CSV (Macintosh)" ends lines with a lone CR: the header is still found (the CSV
    reader saw the whole first block as one line and raised) and every value is read as text."""
    lines = [
        "client_id,clinician_id,session_date,session_number,instrument,"
        "item_1,item_2,item_3,item_4,total",
        "0012,007,2024-11-23,1,SRS,9.50,9,9,9,36.5",
        "0013,007,2024-11-23,1,SRS,9,9,9,9,36",
    ]
    reference = {"clinic_id": "mac", "timezone": "UTC", "format": "reference"}
    raw = read_raw(
        write(tmp_path, "m.csv", newline.join(lines) + newline), "measures", cfg(reference)
    )
    assert raw.table.column("client_id").to_pylist() == ["0012", "0013"]
    assert raw.table.column("item_1").to_pylist() == ["9.50", "9"]
    assert raw.table.column("source_line").to_pylist() == [2, 3]
