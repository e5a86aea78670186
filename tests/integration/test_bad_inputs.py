"""Bad inputs end to end, through the real ingest (readers, guard, GX, DuckDB): every file gets a
status and a specific reason, good rows next to bad ones load, the ledger's counts add up, and an
identifier planted anywhere never reaches the warehouse, the quarantine, the logs or Data Docs."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.ingest.run import ingest_all
from pipelines.warehouse import FileResult

HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)


def row(
    client: str = "C0001",
    session: int | str = 1,
    instrument: str = "PHQ-9",
    items: list[str] | None = None,
    total: str = "",
    clinician: str = "T01",
    date: str = "2025-01-07",
) -> str:
    if items is None:
        items = ["1"] * 9 if instrument == "PHQ-9" else ["9"] * 4
    cells = items + [""] * (12 - len(items))
    return ",".join([client, clinician, date, str(session), instrument, *cells, total])


def good_rows(n: int, client: str = "C0001") -> list[str]:
    return [row(client=client, session=i) for i in range(1, n + 1)]


def make_clinic(root: Path, clinic: str = "ref_clinic", extra: str = "") -> tuple[Path, Path]:
    config = root / "config"
    (config / "clinics").mkdir(parents=True, exist_ok=True)
    (config / "clinics" / f"{clinic}.yaml").write_text(
        f"clinic_id: {clinic}\ntimezone: Europe/Berlin\nformat: reference\n{extra}",
        encoding="utf-8",
    )
    landing = root / "landing"
    (landing / clinic).mkdir(parents=True, exist_ok=True)
    return config, landing


def write(landing: Path, name: str, lines: list[str], clinic: str = "ref_clinic") -> Path:
    p = landing / clinic / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def ingest(root: Path, config: Path, landing: Path) -> dict[str, FileResult]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = ingest_all(config, landing, root / "warehouse.duckdb", root / "docs")
    for r in results:
        assert r.rows_in == r.rows_loaded + r.rows_quarantined + r.rows_duplicate, r
        assert r.status in ("loaded", "loaded_with_quarantine", "rejected", "duplicate"), r
    return {r.file_name: r for r in results}


def query(root: Path, sql: str, params: list[object] | None = None) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def landing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, FileResult]]:
    """One landing folder with one file per bad-input case, ingested in one run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    config, landing = make_clinic(root)
    folder = landing / "ref_clinic"
    (folder / "measures_empty.csv").write_bytes(b"")
    write(landing, "measures_header_only.csv", [HEADER])
    write(landing, "measures_semicolon.csv", [HEADER.replace(",", ";"), *good_rows(2)])
    write(
        landing,
        "measures_missing_column.csv",
        [HEADER.replace("instrument,", ""), *[r.replace(",PHQ-9", "") for r in good_rows(2)]],
    )
    write(landing, "measures_notes.csv", [HEADER + ",Notes", *[r + ",ok" for r in good_rows(2)]])
    write(
        landing,
        "measures_extra.csv",
        [HEADER + ",room", *[row(client="C0100", session=i) + ",3b" for i in (1, 2)]],
    )
    (folder / "measures_truncated.csv").write_text(
        "\n".join([HEADER, row(client="C0300"), row(client="C0300", session=2)[:30]]),
        encoding="utf-8",
    )
    write(
        landing,
        "measures_duplicated.csv",
        [HEADER, *good_rows(3, "C0400"), row(client="C0400", session=2)],
    )
    write(landing, "measures_original.csv", [HEADER, *good_rows(2, "C0500")])
    write(landing, "measures_resent copy.csv", [HEADER, *good_rows(2, "C0500")])
    (folder / "measures_link.csv").symlink_to(folder / "measures_original.csv")
    (folder / "measures_folder.csv").mkdir()
    big = "x" * (5 * 1024 * 1024)
    write(landing, "measures_big_field.csv", [HEADER, row(client="C0600"), row(client=big)])
    write(
        landing,
        "measures_formula.csv",
        [
            HEADER,
            row(client="C0700"),
            row(client="=HYPERLINK(1)", session=2),
            row(client="C0700", session=3, clinician="<script>x</script>"),
            row(client="+SUM(A1)", session=4),
            row(client="@cmd", session=5),
        ],
    )
    write(landing, "measures 'quoted'; odd name.csv", [HEADER, *good_rows(2, "C0800")])
    (folder / "measures_gzip.csv").write_bytes(
        gzip.compress(("\n".join([HEADER, *good_rows(2, "C0900")]) + "\n").encode())
    )
    write(
        landing,
        "measures_mixed.csv",
        [
            HEADER,
            row(client="C1000", session=1),
            row(client="C1000", session=2, items=["1"] * 8),  # PHQ-9 item missing
            row(client="C1000", session=3, total="20"),  # inconsistent total
            row(client="C1000", session=4, items=["1"] * 8 + ["7"]),  # out of range
            row(client="C1000", session=5),
        ],
    )
    write(
        landing,
        "appointments_mixed.csv",
        [
            "client_id,clinician_id,appointment_date,status",
            "C1100,T01,2025-01-07,attended",
            "C1100,T01,2025-01-14,rescheduled",
            "C1100,T01,2025-01-21,no_show",
            "C1100,T01,2025-01-21,no_show",
            "C1100,T01,2099-01-28,attended",
            "-C1100,T01,2025-02-04,attended",
        ],
    )
    return root, ingest(root, config, landing)


def error_code(r: FileResult) -> str:
    assert r.error is not None
    return r.error.split(":")[0]


@pytest.mark.parametrize(
    "name,code",
    [
        ("measures_empty.csv", "empty"),
        ("measures_header_only.csv", "header_only"),
        ("measures_semicolon.csv", "wrong_delimiter"),
        ("measures_missing_column.csv", "missing_column"),
        ("measures_notes.csv", "identifying_column"),
        ("measures_truncated.csv", "truncated"),
        ("measures_big_field.csv", "oversized_field"),
        ("measures_gzip.csv", "compressed"),
        ("measures_link.csv", "not_a_regular_file"),
        ("measures_folder.csv", "not_a_regular_file"),
    ],
)
def test_file_level_problems_are_rejected_with_a_specific_reason(
    landing_run, name: str, code: str
) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    r = results[name]
    assert r.status == "rejected"
    assert error_code(r) == code
    assert r.rows_loaded == 0
    ledger = query(root, "select status, error from ingest_files where file_name = ?", [name])
    assert ledger and ledger[0][0] == "rejected" and ledger[0][1].startswith(code)


def test_latin1_in_the_header_line_is_rejected(tmp_path: Path) -> None:
    config, landing = make_clinic(tmp_path)
    (landing / "ref_clinic" / "measures_latin1_header.csv").write_bytes(
        ("\n".join([HEADER + ",Größe", row(client="C0200") + ",1"]) + "\n").encode("latin-1")
    )
    (r,) = ingest(tmp_path, config, landing).values()
    assert (r.status, error_code(r)) == ("rejected", "undecodable_bytes")


def test_latin1_bytes_in_a_utf8_clinic_reject_the_file(tmp_path: Path) -> None:
    config, landing = make_clinic(tmp_path)
    write(landing, "measures_ok.csv", [HEADER, *good_rows(2, "C0201")])
    (landing / "ref_clinic" / "measures_latin1.csv").write_bytes(
        ("\n".join([HEADER, row(client="C0200"), row(client="Müller", session=2)]) + "\n").encode(
            "latin-1"
        )
    )
    results = ingest(tmp_path, config, landing)
    assert results["measures_ok.csv"].status == "loaded"
    r = results["measures_latin1.csv"]
    assert (r.status, error_code(r)) == ("rejected", "undecodable_bytes")


def test_identifying_header_stores_no_row(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    assert "'Notes'" in (results["measures_notes.csv"].error or "")
    assert (
        query(root, "select count(*) from quarantined_rows where file_name='measures_notes.csv'")[
            0
        ][0]
        == 0
    )


def test_unknown_harmless_column_is_ignored_and_recorded(landing_run) -> None:  # type: ignore[no-untyped-def]
    _, results = landing_run
    r = results["measures_extra.csv"]
    assert r.status == "loaded" and r.rows_loaded == 2
    assert r.ignored_columns == ["room"]


def test_exact_duplicate_rows_are_counted_not_loaded_twice(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    r = results["measures_duplicated.csv"]
    assert (r.status, r.rows_in, r.rows_loaded, r.rows_duplicate) == ("loaded", 4, 3, 1)
    assert query(root, "select count(*) from measurements where client_id = 'C0400'")[0][0] == 3


def test_the_same_content_under_a_new_name_is_a_duplicate(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    statuses = sorted(
        [results["measures_original.csv"].status, results["measures_resent copy.csv"].status]
    )
    assert statuses == ["duplicate", "loaded"]
    assert query(root, "select count(*) from measurements where client_id = 'C0500'")[0][0] == 2


def test_formula_and_markup_in_codes_are_quarantined(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    r = results["measures_formula.csv"]
    assert (r.status, r.rows_loaded, r.rows_quarantined) == ("loaded_with_quarantine", 1, 4)
    rows = query(
        root,
        "select line_number, reasons from quarantined_rows "
        "where file_name = 'measures_formula.csv' order by line_number",
    )
    assert [line for line, _ in rows] == [3, 4, 5, 6]
    for _, reasons in rows:
        assert any(x.startswith("formula_or_markup") for x in reasons)


def test_odd_file_names_are_recorded_as_delivered(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    name = "measures 'quoted'; odd name.csv"
    assert results[name].status == "loaded"
    got = query(root, "select file_name, rows_loaded from ingest_files where rows_loaded = 2")
    assert (name, 2) in got


def test_good_rows_next_to_bad_ones_load_and_bad_rows_keep_every_reason(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    r = results["measures_mixed.csv"]
    assert (r.status, r.rows_loaded, r.rows_quarantined) == ("loaded_with_quarantine", 2, 3)
    got = {
        line: {x.split(":")[0] for x in reasons}
        for line, reasons in query(
            root,
            "select line_number, reasons from quarantined_rows "
            "where file_name = 'measures_mixed.csv'",
        )
    }
    assert got[3] >= {"item_missing", "total_missing"}
    assert got[4] == {"total_inconsistent"}
    assert "item_out_of_range" in got[5]
    assert r.data_docs_path and Path(r.data_docs_path).exists()
    assert r.top_reasons


def test_appointments_are_checked_too(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    r = results["appointments_mixed.csv"]
    assert (r.status, r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (
        "loaded_with_quarantine",
        2,
        3,
        1,
    )
    got = {
        line: {x.split(":")[0] for x in reasons}
        for line, reasons in query(
            root,
            "select line_number, reasons from quarantined_rows where file_name = ?",
            ["appointments_mixed.csv"],
        )
    }
    assert got == {
        3: {"unknown_status"},
        6: {"appointment_date_in_future"},
        7: {"formula_or_markup", "invalid_code"},
    }


def test_every_file_has_a_status_and_the_counts_add_up(landing_run) -> None:  # type: ignore[no-untyped-def]
    root, results = landing_run
    on_disk = {p.name for p in (root / "landing" / "ref_clinic").iterdir()}
    assert set(results) == on_disk
    bad = query(
        root,
        "select file_name from ingest_files "
        "where rows_in <> rows_loaded + rows_quarantined + rows_duplicate",
    )
    assert bad == []


# --------------------------------------------------------------------------- canaries

CANARY_VALUES = {
    "email": "canary.jane@example.org",
    "phone": "+49 171 5550 1234",
    "ssn": "078-05-1120",
    "url": "https://canary.example.com/p",
    "ip": "203.0.113.77",
    "name": "Canary Janedoe",
    # the guard's corpus families (tests/guard_corpus.py), one canary each
    "phone_us": "(555) 867-5309",
    "phone_fr": "+33 6 55 51 23 45",
    "phone_jp": "03-5550-1234",
    "phone_intl_bare": "+4930555012345",
    "ipv6": "2001:db8::cafe:77",
    "url_www": "www.canary-example.org/x",
    "gps": "52.520008, 13.404954",
    "address": "12 Canary Street",
    "address_de": "Kanarienweg 7",
    "dob": "14.03.1985",
    "name_cyrillic": "Иван Канарейкин",
    "name_greek": "Γιώργος Καναρίνης",
}
# where a date belongs a date is a date, and a name is withheld by shape outside code columns
CANARY_FIELDS = {
    "name": ["client_id", "clinician_id"],
    "name_cyrillic": ["client_id", "clinician_id"],
    "name_greek": ["client_id", "clinician_id"],
    "dob": ["client_id", "clinician_id", "session_number", "instrument", "item_2", "total"],
}
FIELDS = [
    "client_id",
    "clinician_id",
    "session_date",
    "session_number",
    "instrument",
    "item_2",
    "total",
]


def _canary_row(field: str, value: str, session: int) -> str:
    cells = {
        "client_id": "C2000",
        "clinician_id": "T01",
        "session_date": "2025-01-07",
        "session_number": str(session),
        "instrument": "PHQ-9",
        **{f"item_{i}": ("1" if i <= 9 else "") for i in range(1, 13)},
        "total": "",
    }
    cells[field] = value
    return ",".join(f'"{v}"' if "," in v else v for v in cells.values())


def _all_text(root: Path) -> str:
    """Every value of every warehouse table, as text."""
    out = []
    tables = [t for (t,) in query(root, "select table_name from information_schema.tables")]
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        for t in tables:
            out.append(str(conn.table(t).fetchall()))
    return "\n".join(out)


def test_identifier_canaries_appear_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    config, landing = make_clinic(tmp_path)
    lines = [HEADER, row(client="C2000", session=1000)]
    session = 1
    for kind, value in CANARY_VALUES.items():
        fields = CANARY_FIELDS.get(kind, FIELDS)
        for field in fields:
            lines.append(_canary_row(field, value, session))
            session += 1
    write(landing, "measures_canary.csv", lines)
    # an identifying column: the whole file is rejected and none of its values is stored
    write(
        landing,
        "measures_named.csv",
        [HEADER + ",Patient Name", row(client="C2001") + ",Canary Zebedee-Column"],
    )
    caplog.set_level(logging.DEBUG)
    results = ingest(tmp_path, config, landing)
    r = results["measures_canary.csv"]
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (1, len(lines) - 2, 0)
    assert results["measures_named.csv"].status == "rejected"

    quarantined = query(
        tmp_path,
        "select reasons, row_data::varchar from quarantined_rows "
        "where file_name = 'measures_canary.csv'",
    )
    assert len(quarantined) == r.rows_quarantined
    for reasons, data in quarantined:
        assert any(x.startswith("identifier_in_field") for x in reasons), reasons
        assert "[redacted]" in data

    # the weekly digests (clinicians and the clinic's data-team summary) of the same warehouse
    from pipelines.deliver.digest import run_weekly_digest

    outbox = tmp_path / "outbox"
    run_weekly_digest(
        tmp_path / "warehouse.duckdb", config, dt.date.today() + dt.timedelta(days=1), outbox
    )
    digests = [p for p in outbox.rglob("*") if p.is_file()]
    assert digests, "no digest or data-team summary was written"

    from pipelines.deliver.notify import receipt_message

    receipt = receipt_message(
        "ref_clinic", "run", [vars(r) for r in results.values()], "aw@example.org", ["t@x.org"]
    )
    captured = capsys.readouterr()
    haystacks = {
        "receipt": receipt.as_string(),
        "digests": "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in digests),
        "warehouse": _all_text(tmp_path),
        "logs": caplog.text + captured.out + captured.err,
        "results": repr(list(results.values())),
    }
    docs = [
        p for p in (tmp_path / "docs").rglob("*") if p.is_file() and p.suffix in (".html", ".json")
    ]
    assert docs, "Data Docs were not written"
    haystacks["data_docs"] = "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in docs
    )
    raw_db = (tmp_path / "warehouse.duckdb").read_bytes()
    for value in [*CANARY_VALUES.values(), "Canary Zebedee-Column"]:
        for where, text in haystacks.items():
            assert value not in text, f"{value!r} leaked into {where}"
        assert value.encode() not in raw_db, f"{value!r} found in the warehouse file bytes"


def test_rows_with_different_identifiers_are_quarantined_not_counted_as_copies(
    tmp_path: Path,
) -> None:
    config, landing = make_clinic(tmp_path)
    lines = [HEADER, row(client="C3000", session=9)]
    lines += [_canary_row("session_number", v, 0) for v in list(CANARY_VALUES.values())[:3]]
    write(landing, "measures_ids.csv", lines)
    (r,) = ingest(tmp_path, config, landing).values()
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (1, 3, 0)


def test_redacted_codes_are_not_reported_as_duplicate_keys(tmp_path: Path) -> None:
    """Every redacted code becomes "[redacted]": the key check must compare the codes as
    delivered, so distinct identifiers in the code column give one reason each, not a false
    duplicate_key_in_file; the same identifier twice with different values still conflicts."""
    config, landing = make_clinic(tmp_path)
    lines = [HEADER, row(client="C3500", session=1)]
    lines += [row(client=f"jane.{i}@example.org", session=1) for i in range(3)]
    lines += [row(client="(555) 010-2030", session=2, items=["2"] * 9)]
    lines += [row(client="(555) 010-2030", session=2, items=["3"] * 9)]
    write(landing, "measures_keys.csv", lines)
    (r,) = ingest(tmp_path, config, landing).values()
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate) == (1, 5, 0)
    reasons = [
        [x.split(":")[0] for x in rs]
        for (rs,) in query(tmp_path, "select reasons from quarantined_rows order by line_number")
    ]
    assert reasons[:3] == [["identifier_in_field"]] * 3
    assert reasons[3:] == [["duplicate_key_in_file", "identifier_in_field"]] * 2


def test_a_file_with_only_bad_rows_still_stores_them_in_quarantine(tmp_path: Path) -> None:
    config, landing = make_clinic(tmp_path)
    write(landing, "measures_all_bad.csv", [HEADER, row(client="C3100", items=["1"] * 8)])
    (r,) = ingest(tmp_path, config, landing).values()
    assert r.rows_quarantined == 1
    assert query(tmp_path, "select count(*) from quarantined_rows")[0][0] == 1


# --------------------------------------------------------------------------- property test

CELL = st.one_of(
    st.sampled_from(["", "1", "3", "10", "-1", "2.5", "PHQ-9", "SRS", "C0001", "2025-01-07"]),
    st.sampled_from(["=1+1", "<i>", "x@y.org", "1e9", "NaN", "  ", '"', "2025-02-30", "Ä"]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
        max_size=8,
    ),
)


@st.composite
def malformed_rows(draw: st.DrawFn) -> list[list[str]]:
    n = draw(st.integers(min_value=1, max_value=6))
    rows = []
    for i in range(n):
        base = row(client=f"C{i % 3:04d}", session=i + 1).split(",")
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            j = draw(st.integers(min_value=0, max_value=len(base) - 1))
            base[j] = draw(CELL)
        rows.append(base)
    return rows


def _csv_line(cells: list[str]) -> str:
    return ",".join(
        '"' + c.replace('"', '""') + '"' if any(x in c for x in ',"') else c for c in cells
    )


@settings(
    max_examples=int(os.environ.get("BAD_INPUT_EXAMPLES", "4")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=malformed_rows())
def test_malformed_rows_never_escape_and_counts_add_up(rows: list[list[str]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="aw-prop-"))
    try:
        config, landing = make_clinic(root)
        write(landing, "measures_prop.csv", [HEADER, *(_csv_line(r) for r in rows)])
        results = ingest(root, config, landing)  # asserts the invariant per file
        (r,) = results.values()
        if r.status != "rejected" or r.rows_in:
            assert r.rows_in == len(rows)
        stored = query(root, "select count(*) from measurements")[0][0]
        assert stored == r.rows_loaded
        quarantined = query(root, "select count(*) from quarantined_rows")[0][0]
        assert quarantined == r.rows_quarantined
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_bare_surname_in_a_code_column_is_never_loaded(tmp_path: Path) -> None:
    config, landing = make_clinic(tmp_path)
    write(
        landing,
        "measures_surname.csv",
        [
            HEADER,
            row(client="C3200"),
            _canary_row("client_id", "Smithson", 2),
            _canary_row("clinician_id", "Okonkwo", 3),
        ],
    )
    (r,) = ingest(tmp_path, config, landing).values()
    assert (r.rows_loaded, r.rows_quarantined) == (1, 2)
    loaded = query(tmp_path, "select client_id || clinician_id from measurements")
    assert all("Smithson" not in v and "Okonkwo" not in v for (v,) in loaded)


def test_quarantine_withholds_any_value_not_shaped_like_its_column(tmp_path: Path) -> None:
    """Names in an item, a date, the instrument, the session number or the total are not
    caught as identifiers by shape alone; quarantine must still never store them."""
    config, landing = make_clinic(tmp_path)
    planted = {
        "item_2": "Johanna Meyer",
        "session_date": "Kowalczyk",
        "instrument": "Bartholomew",
        "session_number": "Fitzgerald",
        "total": "Okonkwo",
    }
    lines = [HEADER, row(client="C3300")]
    lines += [_canary_row(field, value, i + 2) for i, (field, value) in enumerate(planted.items())]
    write(landing, "measures_shapes.csv", lines)
    (r,) = ingest(tmp_path, config, landing).values()
    assert (r.rows_loaded, r.rows_quarantined) == (1, len(planted))
    text = _all_text(tmp_path)
    for value in planted.values():
        assert value not in text
    stored = query(tmp_path, "select row_data::varchar from quarantined_rows")
    assert all("[withheld]" in data for (data,) in stored)
    # the well-shaped cells of those rows are kept so the clinic can find and fix the row
    assert all('"client_id":"C2000"' in data for (data,) in stored)


def test_a_line_with_a_stray_delimiter_is_quarantined_and_its_neighbours_load(
    tmp_path: Path,
) -> None:
    config, landing = make_clinic(tmp_path)
    lines = [
        HEADER,
        *good_rows(2, "C3400"),
        row(client="C3401") + ",Canary Stray",
        row(client="C3402"),
    ]
    write(landing, "measures_stray.csv", lines)
    (r,) = ingest(tmp_path, config, landing).values()
    assert (r.status, r.rows_in, r.rows_loaded, r.rows_quarantined) == (
        "loaded_with_quarantine",
        4,
        3,
        1,
    )
    ((line, reasons, data),) = query(
        tmp_path, "select line_number, reasons, row_data::varchar from quarantined_rows"
    )
    assert line == 4 and reasons[0].startswith("wrong_field_count")
    assert "Canary Stray" not in data and "Canary Stray" not in _all_text(tmp_path)
