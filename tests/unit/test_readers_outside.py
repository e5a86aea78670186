"""Exports written the way REDCap, Qualtrics and Excel write them, in variants the examples do
not cover (`benchmarks/outside_exports.py` runs them all through the CLI): each case failed, or
failed unclearly, before the reader handled it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.config import ClinicConfig, parse_clinic_config, parse_condition
from pipelines.errors import FileRejected
from pipelines.ingest.guard import check_header
from pipelines.ingest.read import canonicalize, read_raw

QUALTRICS: dict[str, Any] = {
    "clinic_id": "qualtrics_probe",
    "timezone": "America/Denver",
    "format": "custom",
    "layout": "wide",
    "header_rows": 2,
    "date_format": "%Y-%m-%d %H:%M:%S",
    "columns": {
        "client_id": "client_code",
        "clinician_id": "clinician_code",
        "session_date": "RecordedDate",
        "session_number": "session",
    },
    "keep_rows": [
        "Status not in (1, 2, 8, 9, Survey Preview, Survey Test, Spam, Preview Spam)",
        "Finished in (1, True)",
    ],
    "wide": {"blocks": {"SRS": {"items": ["Q1_1", "Q1_2", "Q1_3", "Q1_4"]}}},
}
META = "Status,IPAddress,Finished,RecordedDate,RecipientEmail,LocationLatitude"
HEAD = f"{META},Q1_1,Q1_2,Q1_3,Q1_4,client_code,clinician_code,session\n"
IMPORTS = ",".join(['"{""ImportId"":""x""}"'] * 13) + "\n"


def _cfg(base: dict[str, Any], **changes: Any) -> ClinicConfig:
    data = {**base, **changes}
    return parse_clinic_config(data, f"{data['clinic_id']}.yaml")


def _write(tmp_path: Path, text: str | bytes, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _qualtrics(status: str, finished: str, email: str = "", text_row: str | None = None) -> str:
    texts = text_row or ",".join(["x"] * 13) + "\n"
    rows = [
        f"{status},,{finished},2025-03-03 10:00:00,{email},,7,8,9,9.5,C-12,T1,1\n",
        f"{status},,{finished},2025-03-10 10:00:00,{email},,7,8,9,9,C-12,T1,2\n",
    ]
    return HEAD + texts + IMPORTS + "".join(rows)


@pytest.mark.parametrize(("status", "finished"), [("0", "1"), ("IP Address", "True")])
def test_qualtrics_blank_identifying_metadata_is_ignored_in_either_export_mode(
    tmp_path: Path, status: str, finished: str
) -> None:
    raw = read_raw(_write(tmp_path, _qualtrics(status, finished)), "measures", _cfg(QUALTRICS))
    check_header(raw.header, "measures")  # IPAddress, RecipientEmail, LocationLatitude: blank
    assert raw.table.num_rows == 2
    assert "RecipientEmail (blank)" in raw.ignored_columns


def test_an_identifying_metadata_column_with_a_value_still_rejects(tmp_path: Path) -> None:
    path = _write(tmp_path, _qualtrics("0", "1", email="someone@example.org"))
    raw = read_raw(path, "measures", _cfg(QUALTRICS))
    with pytest.raises(FileRejected, match="identifying_column|RecipientEmail"):
        check_header(raw.header, "measures")


def test_question_texts_with_line_breaks_are_read_and_rows_keep_their_lines(
    tmp_path: Path,
) -> None:
    texts = ",".join(['"Please rate.\nHow well did we understand you?"'] * 13) + "\n"
    path = _write(tmp_path, _qualtrics("0", "1", text_row=texts))
    raw = read_raw(path, "measures", _cfg(QUALTRICS))
    assert raw.table.num_rows == 2 and not raw.malformed_lines
    # the header, a question-text row over 14 lines (13 texts with a line break each), the
    # ImportIds: the responses start on line 17
    assert raw.table.column("source_line").to_pylist() == [17, 18]


def test_a_condition_that_no_row_meets_rejects_the_file_and_says_why(tmp_path: Path) -> None:
    path = _write(tmp_path, _qualtrics("0", "1"))
    cfg = _cfg(QUALTRICS, keep_rows=["Finished == True"])  # a choice-text condition
    with pytest.raises(FileRejected, match="nothing_kept") as e:
        read_raw(path, "measures", cfg)
    assert "'Finished'" in str(e.value) and "in (" in str(e.value)


def test_in_and_not_in_conditions() -> None:
    assert parse_condition("Finished in (1, True)") == ("Finished", "in", "1, True")
    assert parse_condition("Status NOT IN (1,Survey Preview)")[1] == "not in"
    assert parse_condition("Duration (in seconds) == 5") == ("Duration (in seconds)", "==", "5")


def test_previews_are_filtered_in_both_export_modes(tmp_path: Path) -> None:
    for status in ("1", "Survey Preview"):
        text = _qualtrics("0", "1") + f"{status},,1,2025-03-11 10:00:00,,,7,8,9,9,C-12,T1,3\n"
        raw = read_raw(_write(tmp_path, text), "measures", _cfg(QUALTRICS))
        assert raw.table.num_rows == 2
        assert sum(raw.filtered.values()) == 1


def test_a_utf16_export_is_read_whatever_the_encoding_says(tmp_path: Path) -> None:
    text = "client_id\tclinician_id\tsession_date\tsession_number\tinstrument\titem_1\n"
    text += "C-1\tT1\t2025-03-03\t1\tPHQ-9\t2\n"
    cfg = _cfg(
        {"clinic_id": "u16", "timezone": "Europe/Berlin", "format": "custom"}, delimiter="\t"
    )
    raw = read_raw(_write(tmp_path, text.encode("utf-16")), "measures", cfg)
    assert raw.table.column("client_id").to_pylist() == ["C-1"]
    # a comma-configured clinic gets the delimiter named, not "not valid utf-8"
    ref = _cfg({"clinic_id": "u16", "timezone": "Europe/Berlin", "format": "reference"})
    with pytest.raises(FileRejected, match="wrong_delimiter"):
        read_raw(_write(tmp_path, text.encode("utf-16"), "b.csv"), "measures", ref)


REDCAP_LABELS: dict[str, Any] = {
    "clinic_id": "redcap_probe",
    "timezone": "America/New_York",
    "format": "custom",
    "layout": "wide",
    "columns": {"client_id": "Record ID", "clinician_id": "Clinician", "session_date": "Date"},
    "session_number_from": {"column": "Event Name", "pattern": r"^Session (\d+) "},
    "wide": {
        "blocks": {
            "SRS": {"items": ["S1", "S2", "S3", "S4"], "keep_rows": ["Complete? == Complete"]},
        }
    },
}


def test_a_header_used_by_the_config_twice_is_rejected_with_its_name(tmp_path: Path) -> None:
    text = "Record ID,Event Name,Clinician,Date,Complete?,S1,S2,S3,S4,Complete?\n"
    text += "12-3,Session 1 (Arm 1: Treatment),T1,2025-03-03,Complete,7,8,9,9,Incomplete\n"
    with pytest.raises(FileRejected, match="duplicate_column") as e:
        read_raw(_write(tmp_path, text), "measures", _cfg(REDCAP_LABELS))
    assert "'Complete?' (2 times)" in str(e.value)


def test_a_duplicate_header_the_config_does_not_use_is_ignored(tmp_path: Path) -> None:
    text = "Record ID,Event Name,Clinician,Date,Note?,S1,S2,S3,S4,Note?\n"
    text += "12-3,Session 1 (Arm 1: Treatment),T1,2025-03-03,,7,8,9,9,\n"
    cfg = _cfg(REDCAP_LABELS, wide={"blocks": {"SRS": {"items": ["S1", "S2", "S3", "S4"]}}})
    assert read_raw(_write(tmp_path, text), "measures", cfg).table.num_rows == 1


REDCAP_REPEATING: dict[str, Any] = {
    "clinic_id": "redcap_probe",
    "timezone": "America/New_York",
    "format": "custom",
    "layout": "wide",
    "columns": {
        "client_id": "record_id",
        "clinician_id": "clinician_code",
        "session_date": "session_date",
    },
    "session_number_from": {"column": "redcap_repeat_instance"},
    "fill_from_client": ["clinician_id"],
    "wide": {"blocks": {"SRS": {"items": ["srs_1", "srs_2", "srs_3", "srs_4"]}}},
}


def test_a_repeating_instrument_takes_the_clinician_from_the_records_base_row(
    tmp_path: Path,
) -> None:
    text = (
        "record_id,redcap_repeat_instrument,redcap_repeat_instance,clinician_code,session_date,"
        "srs_1,srs_2,srs_3,srs_4\n"
        "12-3,,,T01,,,,,\n"
        "12-3,srs,1,,2025-03-03,7,8,9,9\n"
        "12-3,srs,2,,2025-03-10,7,8,9,9\n"
        "4-15,,,T01,,,,,\n"
        "4-15,,,T02,,,,,\n"
        "4-15,srs,1,,2025-03-03,7,8,9,9\n"
    )
    cfg = _cfg(REDCAP_REPEATING)
    raw = read_raw(_write(tmp_path, text), "measures", cfg)
    typed, _ = canonicalize(raw, cfg)
    lines = typed.column("source_line").to_pylist()
    got = dict(zip(lines, typed.column("clinician_id").to_pylist(), strict=True))
    # 4-15 has two clinicians on its base rows: which one is unknown, the cell stays blank
    assert got == {3: "T01", 4: "T01", 7: None}
    without = _cfg(REDCAP_REPEATING, fill_from_client=[])
    typed, _ = canonicalize(read_raw(tmp_path / "export.csv", "measures", without), without)
    assert typed.column("clinician_id").null_count == 3


def test_fill_from_client_takes_only_a_clients_fixed_columns() -> None:
    from pipelines.errors import ConfigError

    with pytest.raises((ValueError, ConfigError), match="fill_from_client|cannot be filled"):
        _cfg(REDCAP_REPEATING, fill_from_client=["session_date"])


@pytest.mark.parametrize(
    ("stamp", "loads"),
    [
        ("2025-03-03 10:00:00", True),
        ("2025-03-03T10:00", True),
        ("2025-03-03 10:00:00 PM", True),
        ("2025-03-03T23:30:00Z", False),  # a UTC time: the clinic's day may be another
        ("2025-03-03T23:30:00+02:00", False),
    ],
)
def test_a_date_format_reads_the_day_of_a_local_timestamp(
    tmp_path: Path, stamp: str, loads: bool
) -> None:
    text = HEAD.replace("RecordedDate", "Recorded") + ",".join(["x"] * 13) + "\n" + IMPORTS
    text += f"0,,1,{stamp},,,7,8,9,9.5,C-12,T1,1\n"
    cols = {**QUALTRICS["columns"], "session_date": "Recorded"}
    cfg = _cfg(QUALTRICS, date_format="%Y-%m-%d", columns=cols)
    typed, issues = canonicalize(read_raw(_write(tmp_path, text), "measures", cfg), cfg)
    assert (typed.column("session_date").null_count == 0) is loads
    assert issues.empty is loads


# ---- item answers (item_values) and Excel serial dates: benchmarks/outside_exports.py's
# "PHQ-9 answers as labels", "default recodes 1-4" and "Excel serial numbers" exports

SPLIT_PHQ: dict[str, Any] = {
    "clinic_id": "split_probe",
    "timezone": "Europe/Berlin",
    "format": "custom",
    "instrument": "PHQ-9",
    "columns": {
        "client_id": "client",
        "clinician_id": "therapist",
        "session_date": "date",
        "session_number": "session",
        **{f"item_{i}": f"phq9_{i}" for i in range(1, 10)},
    },
}
PHQ_HEAD = "client,therapist,date,session," + ",".join(f"phq9_{i}" for i in range(1, 10)) + "\n"
LABELS = {"Not at all": 0, "Several days": 1, "More than half the days": 2, "Nearly every day": 3}


def test_items_exported_as_choice_text_are_scored_by_item_values(tmp_path: Path) -> None:
    answers = ["Not at all", "several days ", "More than half the days", "Nearly every day"] * 2
    line = "C-12,T1,2025-03-03,1," + ",".join([*answers, "Not at all"]) + "\n"
    cfg = _cfg(SPLIT_PHQ, item_values={"PHQ-9": LABELS})
    raw = read_raw(_write(tmp_path, PHQ_HEAD + line), "measures", cfg)
    # the guard sees scores where the export wrote a declared answer, never free text
    assert raw.table.column("item_4").to_pylist() == ["3"]
    typed, issues = canonicalize(raw, cfg)
    assert issues.empty
    assert typed.column("total").to_pylist() == [12.0]


def test_an_answer_item_values_does_not_list_holds_its_row_back(tmp_path: Path) -> None:
    # Qualtrics' default codes 1-4 for a 0-3 scale: a 0 the map does not list is not taken as 0
    recode = {"PHQ-9": {"1": 0, "2": 1, "3": 2, "4": 3}}
    rows = [
        "C-12,T1,2025-03-03,1," + ",".join(["4", "1", "2", "3", "1", "1", "1", "1", "2"]) + "\n",
        "C-12,T1,2025-03-10,2," + ",".join(["0", "1", "2", "3", "1", "1", "1", "1", "2"]) + "\n",
    ]
    cfg = _cfg(SPLIT_PHQ, item_values=recode)
    raw = read_raw(_write(tmp_path, PHQ_HEAD + "".join(rows)), "measures", cfg)
    typed, issues = canonicalize(raw, cfg)
    assert typed.column("item_1").to_pylist()[0] == 3.0
    assert typed.column("total").to_pylist()[0] == 7.0
    assert issues["row"].tolist() == [1]
    assert issues["reason"].iloc[0].startswith("item_value_unmapped: item_1 of PHQ-9")
    assert "item_values.PHQ-9" in issues["reason"].iloc[0]


def test_item_values_leave_other_instruments_alone(tmp_path: Path) -> None:
    cfg = _cfg(
        QUALTRICS,
        item_values={"PHQ-9": LABELS},
        wide={
            "blocks": {
                "SRS": {"items": ["Q1_1", "Q1_2", "Q1_3", "Q1_4"]},
                "PHQ-9": {"items": [f"Q2_{i}" for i in range(1, 10)]},
            }
        },
    )
    head = HEAD.rstrip("\n") + "," + ",".join(f"Q2_{i}" for i in range(1, 10)) + "\n"
    texts = ",".join(["x"] * 22) + "\n"
    imports = ",".join(['"{""ImportId"":""x""}"'] * 22) + "\n"
    row = "0,,1,2025-03-03 10:00:00,,,7,8,9,9.5,C-12,T1,1," + ",".join(["Several days"] * 9)
    raw = read_raw(_write(tmp_path, head + texts + imports + row + "\n"), "measures", cfg)
    typed, issues = canonicalize(raw, cfg)
    assert issues.empty
    assert typed.column("instrument").to_pylist() == ["SRS", "PHQ-9"]
    assert typed.column("total").to_pylist() == [33.5, 9.0]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"PHQ-9": {"Nearly every day": 4}}, "outside the PHQ-9 item range 0-3"),
        ({"PHQ9": {"1": 0}}, "not an instrument"),
        ({"PHQ-9": {"Yes": 1, " yes": 0}}, "the same answer"),
    ],
)
def test_item_values_are_checked_against_the_registry(answers: Any, message: str) -> None:
    with pytest.raises(Exception, match=message):
        _cfg(SPLIT_PHQ, item_values=answers)


def test_dates_as_excel_serial_numbers(tmp_path: Path) -> None:
    items = ",".join(["1"] * 9)
    rows = [
        f"C-12,T1,45749,1,{items}\n",  # 2025-04-02
        f"C-12,T1,45756.5833,2,{items}\n",  # 2025-04-09, 14:00
        f"C-12,T1,2025-04-16,3,{items}\n",  # a date as text is no serial: held back
        f"C-12,T1,12,4,{items}\n",  # 1900-01-12: before Excel's false leap day, not taken
    ]
    cfg = _cfg(SPLIT_PHQ, date_format="excel")
    raw = read_raw(_write(tmp_path, PHQ_HEAD + "".join(rows)), "measures", cfg)
    typed, issues = canonicalize(raw, cfg)
    assert [str(d) for d in typed.column("session_date").to_pylist()[:2]] == [
        "2025-04-02",
        "2025-04-09",
    ]
    assert issues["row"].tolist() == [2, 3]
    assert set(issues["reason"]) == {"bad_date: session_date is not a date in excel"}


# ---- SPSS' CSV (FORMAT=VARIABLE) and pandas: "SPSS CSV" and "pandas to_csv" in the probe


def test_session_numbers_with_a_zero_fraction_are_whole_numbers(tmp_path: Path) -> None:
    items = ",".join(["1"] * 9)
    rows = [
        f"C-12,T1,2025-03-03,1.00,{items}\n",  # SPSS F8.2
        f"C-12,T1,2025-03-10,2.0,{items}\n",  # pandas, a column with blanks
        f"C-12,T1,2025-03-17,3,{items}\n",
        f"C-12,T1,2025-03-24,3.5,{items}\n",  # not a whole number: held back
        f"C-12,T1,2025-03-31,4.01,{items}\n",
    ]
    cfg = _cfg(SPLIT_PHQ)
    typed, issues = canonicalize(
        read_raw(_write(tmp_path, PHQ_HEAD + "".join(rows)), "measures", cfg), cfg
    )
    assert typed.column("session_number").to_pylist()[:3] == [1, 2, 3]
    assert issues["row"].tolist() == [3, 4]
    assert set(issues["reason"]) == {"bad_session_number: session_number is not a whole number"}


def test_a_zero_fraction_is_read_in_the_files_decimal_mark(tmp_path: Path) -> None:
    items = ";".join(["1"] * 9)
    head = PHQ_HEAD.replace(",", ";")
    text = f"C-12;T1;2025-03-03;1,00;{items}\nC-12;T1;2025-03-10;2.00;{items}\n"
    cfg = _cfg(SPLIT_PHQ, delimiter=";", decimal=",")
    typed, issues = canonicalize(read_raw(_write(tmp_path, head + text), "measures", cfg), cfg)
    assert typed.column("session_number").to_pylist()[0] == 1
    assert issues["row"].tolist() == [1]  # "2.00" under a decimal comma is no whole number


def test_month_names_are_read_in_any_case(tmp_path: Path) -> None:
    items = ",".join(["1"] * 9)
    rows = [
        f"C-12,T1,02-APR-2025,1,{items}\n",  # SPSS DATE11
        f"C-12,T1,09-Apr-2025,2,{items}\n",
        f"C-12,T1,31-FEB-2025,3,{items}\n",  # no such day: held back, not rolled over
    ]
    cfg = _cfg(SPLIT_PHQ, date_format="%d-%b-%Y")
    typed, issues = canonicalize(
        read_raw(_write(tmp_path, PHQ_HEAD + "".join(rows)), "measures", cfg), cfg
    )
    assert [str(d) for d in typed.column("session_date").to_pylist()[:2]] == [
        "2025-04-02",
        "2025-04-09",
    ]
    assert issues["row"].tolist() == [2]


@pytest.mark.parametrize("fmt", ["%d-%b-%Y", "%d %B %Y", "%b %d, %Y"])
def test_a_date_format_may_name_the_month(fmt: str) -> None:
    assert _cfg(SPLIT_PHQ, date_format=fmt).date_format == fmt


def test_a_date_format_without_a_month_is_still_refused() -> None:
    with pytest.raises(Exception, match="not a full date format"):
        _cfg(SPLIT_PHQ, date_format="%d.%Y")


# ---- REDCap: two repeating instruments, each with its own date field
# ("REDCap two repeating instruments" in the probe)

TWO_FORMS = (
    "record_id,redcap_repeat_instrument,redcap_repeat_instance,clinician_code,srs_date,"
    "srs_1,srs_2,srs_3,srs_4,phq9_date," + ",".join(f"phq9_{i}" for i in range(1, 10)) + "\n"
    "12-3,,,T01,,,,,,," + "," * 8 + "\n"
    "12-3,srs,1,,2025-03-03,7,8,9,9,," + "," * 8 + "\n"
    "12-3,phq9,1,,,,,,,2025-03-05," + ",".join(["1"] * 9) + "\n"
)


def _two_forms(**blocks: dict[str, Any]) -> ClinicConfig:
    phq = [f"phq9_{i}" for i in range(1, 10)]
    srs = ["srs_1", "srs_2", "srs_3", "srs_4"]
    return _cfg(
        REDCAP_REPEATING,
        columns={"client_id": "record_id", "clinician_id": "clinician_code"},
        wide={
            "blocks": {
                "SRS": {"items": srs, **blocks.get("SRS", {})},
                "PHQ-9": {"items": phq, **blocks.get("PHQ-9", {})},
            }
        },
    )


def test_each_wide_block_may_read_its_own_date_column(tmp_path: Path) -> None:
    cfg = _two_forms(SRS={"session_date": "srs_date"}, **{"PHQ-9": {"session_date": "phq9_date"}})
    raw = read_raw(_write(tmp_path, TWO_FORMS), "measures", cfg)
    assert "srs_date" not in raw.ignored_columns and "phq9_date" not in raw.ignored_columns
    typed, issues = canonicalize(raw, cfg)
    assert issues.empty
    assert typed.column("instrument").to_pylist() == ["SRS", "PHQ-9"]
    assert [str(d) for d in typed.column("session_date").to_pylist()] == [
        "2025-03-03",
        "2025-03-05",
    ]


def test_a_block_date_overrides_the_shared_one_for_that_block_only(tmp_path: Path) -> None:
    cfg = _two_forms(**{"PHQ-9": {"session_date": "phq9_date"}})
    cfg = cfg.model_copy(update={"columns": {**cfg.columns, "session_date": "srs_date"}})
    typed, issues = canonicalize(read_raw(_write(tmp_path, TWO_FORMS), "measures", cfg), cfg)
    assert issues.empty
    assert [str(d) for d in typed.column("session_date").to_pylist()] == [
        "2025-03-03",
        "2025-03-05",
    ]


def test_a_missing_block_date_column_names_its_key(tmp_path: Path) -> None:
    cfg = _two_forms(SRS={"session_date": "srs_date"}, **{"PHQ-9": {"session_date": "phq_date"}})
    with pytest.raises(FileRejected, match=r"wide.blocks.PHQ-9: .*the session date \('phq_date'\)"):
        read_raw(_write(tmp_path, TWO_FORMS), "measures", cfg)


def test_without_a_date_for_every_block_the_shared_date_is_required(tmp_path: Path) -> None:
    cfg = _two_forms(SRS={"session_date": "srs_date"})
    with pytest.raises(FileRejected, match="required column.*session_date"):
        read_raw(_write(tmp_path, TWO_FORMS), "measures", cfg)


# ---- Excel workbooks delivered as they are ("Excel workbook" in the probe)


def test_an_excel_workbook_is_rejected_as_one(tmp_path: Path) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    cfg = _cfg(SPLIT_PHQ)
    with pytest.raises(FileRejected, match=r"^compressed: the file is an Excel workbook \(.xlsx\)"):
        read_raw(_write(tmp_path, buf.getvalue(), "m.xlsx"), "measures", cfg)
    xls = bytes.fromhex("D0CF11E0A1B11AE1") + b"\x00" * 512 + "Ä".encode("cp1252")
    with pytest.raises(FileRejected, match=r"^unparseable: .*Excel 97-2003 workbook \(.xls\)"):
        read_raw(_write(tmp_path, xls, "m.xls"), "measures", cfg)
    with pytest.raises(FileRejected, match="CSV UTF-8"):
        read_raw(_write(tmp_path, xls, "m.xls"), "measures", cfg)
