"""Issue #17 in detail: several file kinds per clinic, row conditions, derived session numbers,
extra header rows, treatment episodes and total-only entries; each problem named with the
config key that fixes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.config import parse_clinic_config
from pipelines.errors import ConfigError, FileRejected
from pipelines.ingest import discovery, prepare
from pipelines.ingest import run as ingest
from pipelines.ingest.read import SESSION_ORDER_TIE, canonicalize, read_raw

BASE: dict[str, Any] = {"clinic_id": "tools", "timezone": "Europe/Berlin", "format": "custom"}
LONG = {
    **BASE,
    "columns": {"client_id": "client", "clinician_id": "therapist", "session_date": "date"},
}
SRS_ITEMS = {"item_1": "i1", "item_2": "i2", "item_3": "i3", "item_4": "i4", "total": "total"}


def cfg(**keys: Any) -> Any:
    return parse_clinic_config({**LONG, **keys}, "tools.yaml")


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_session_order_by_date_numbers_each_series_and_quarantines_ties(tmp_path: Path) -> None:
    c = cfg(
        instrument="SRS",
        columns={**LONG["columns"], **SRS_ITEMS, "episode_id": "episode"},
        session_number_from={"order": "session_date"},
    )
    p = write(
        tmp_path,
        "measures.csv",
        "client,therapist,episode,date,i1,i2,i3,i4,total\n"
        "C1,T1,,2025-03-10,9,9,9,9,36\n"
        "C1,T1,,2025-03-03,8,8,8,8,32\n"
        "C1,T1,2,2025-04-07,7,7,7,7,28\n"  # a second episode starts again at 1
        "C2,T1,,2025-03-03,9,9,9,9,36\n"
        "C2,T1,,2025-03-03,5,5,5,5,20\n"  # two entries on one date: their order is unknown
        "C2,T1,,2025-03-10,9,9,9,9,36\n",
    )
    typed, issues = canonicalize(read_raw(p, "measures", c), c)
    rows = typed.to_pylist()
    got = [(r["client_id"], r["episode_id"], r["session_number"]) for r in rows]
    assert got == [
        ("C1", "", 2),
        ("C1", "", 1),
        ("C1", "2", 1),
        ("C2", "", None),
        ("C2", "", None),
        ("C2", "", 2),  # the tied date still counts: numbers do not move once it is resolved
    ]
    assert sorted(issues.loc[issues["reason"] == SESSION_ORDER_TIE, "row"]) == [3, 4]


def test_session_number_from_an_event_name_and_a_map(tmp_path: Path) -> None:
    text = (
        "client,therapist,date,event,i1,i2,i3,i4,total\n"
        "C1,T1,2025-03-03,session_1_arm_1,9,9,9,9,36\n"
        "C1,T1,2025-03-10,session_12_arm_1,9,9,9,9,36\n"
        "C1,T1,2025-03-17,followup_arm_1,9,9,9,9,36\n"
    )
    p = write(tmp_path, "m.csv", text)
    c = cfg(
        instrument="SRS",
        columns={**LONG["columns"], **SRS_ITEMS},
        session_number_from={"column": "event", "pattern": r"^session_(\d+)_arm_\d+$"},
    )
    raw = read_raw(p, "measures", c)
    assert "event" not in raw.ignored_columns  # used, so not "ignored"
    typed, issues = canonicalize(raw, c)
    assert typed.column("session_number").to_pylist() == [1, 12, None]
    (reason,) = issues.loc[issues["row"] == 2, "reason"]
    assert reason.startswith("session_number_underivable: 'event' gives no session number")
    assert "session_number_from.pattern" in reason and "followup" not in reason
    c = cfg(
        instrument="SRS",
        columns={**LONG["columns"], **SRS_ITEMS},
        session_number_from={"column": "event", "values": {"Followup_Arm_1": 20}},
    )
    typed, issues = canonicalize(read_raw(p, "measures", c), c)
    assert typed.column("session_number").to_pylist() == [None, None, 20]


def test_keep_rows_filters_and_counts_and_a_missing_condition_column_names_the_key(
    tmp_path: Path,
) -> None:
    c = cfg(
        instrument="SRS",
        columns={**LONG["columns"], **SRS_ITEMS, "session_number": "session"},
        keep_rows=["Rater == client", "Status != Survey Preview"],
    )
    p = write(
        tmp_path,
        "m.csv",
        "client,therapist,date,session,Rater,Status,i1,i2,i3,i4,total\n"
        "C1,T1,2025-03-03,1,Client,IP Address,9,9,9,9,36\n"
        "C1,T1,2025-03-03,1,Parent,IP Address,5,5,5,5,20\n"
        "C1,T1,2025-03-03,2, CLIENT ,Survey Preview,5,5,5,5,20\n"
        ",,,,,,,,,,\n"
        ",,,,,,,,,,\n",
    )
    raw = read_raw(p, "measures", c)
    assert raw.table.column("source_line").to_pylist() == [2]
    assert raw.filtered == {
        "filtered: keep_rows 'Rater == client' not met": 1,
        "filtered: keep_rows 'Status != Survey Preview' not met": 1,
        "blank_row: every field of the line is blank (a spreadsheet's leftover row)": 2,
    }
    p = write(tmp_path, "n.csv", "client,therapist,date,session,i1,i2,i3,i4,total\n")
    with pytest.raises(FileRejected) as e:
        read_raw(p, "measures", c)
    msg = str(e.value)
    assert "keep_rows: the file has no column 'Rater'" in msg and "fix keep_rows" in msg
    assert msg.count(" | ") == 1  # one part per missing set


def test_extra_header_rows_are_skipped_in_every_part_with_true_line_numbers(
    tmp_path: Path,
) -> None:
    c = cfg(
        instrument="SRS",
        columns={**LONG["columns"], **SRS_ITEMS, "session_number": "session"},
        header_rows=2,
    )
    lines = ["client,therapist,date,session,i1,i2,i3,i4,total", "Client,Therapist,,,,,,,"]
    lines.append('"{""ImportId"":""QID1""}",,,,,,,,')
    lines += [f"C{i:03d},T1,2025-03-03,1,9,9,9,9,36" for i in range(300)]
    lines.append("C999,T1,2025-03-03,1,11,9,9,9,38")  # out of range: quarantined
    (tmp_path / "landing" / "tools").mkdir(parents=True)
    write(tmp_path / "landing" / "tools", "measures_1.csv", "\n".join(lines) + "\n")
    (d,), _ = discovery.discover(c, tmp_path / "landing", {})
    staged = prepare.prepare_file(d, c, tmp_path / "stage", part_bytes=2048, build_docs=False)
    r = staged.result
    assert (r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_filtered) == (301, 300, 1, 0)
    assert staged.quarantine_path is not None
    with duckdb.connect() as con:
        (line,) = con.execute(
            "select line_number from read_parquet(?)", [f"{staged.quarantine_path}/*.parquet"]
        ).fetchone()
    assert line == len(lines)  # the delivered file's own line number


def test_files_each_kind_read_with_its_own_keys_in_one_clinic(tmp_path: Path) -> None:
    c = cfg(
        columns={**LONG["columns"], "session_number": "session"},
        files=[
            {"pattern": "srs_*.csv", "instrument": "SRS", "columns": SRS_ITEMS},
            {
                "pattern": "phq_*.csv",
                "instrument": "PHQ-9",
                "delimiter": ";",
                "columns": {f"item_{i}": f"phq9_{i}" for i in range(1, 10)},
            },
            {"pattern": "visits_*.csv", "dataset": "appointments", "columns": {"status": "s"}},
        ],
    )
    assert discovery.dataset_of("srs_1.csv", c) == "measures"
    assert discovery.dataset_of("visits_1.csv", c) == "appointments"
    assert discovery.dataset_of("other.csv", c) is None
    found = c.reader_for("phq_1.csv")
    assert found is not None
    phq = found[1]
    assert (phq.instrument, phq.delimiter, phq.columns["client_id"]) == ("PHQ-9", ";", "client")
    header = "client;therapist;date;session;" + ";".join(f"phq9_{i}" for i in range(1, 10))
    p = write(tmp_path, "phq_1.csv", header + "\nC1;T1;2025-03-03;1;1;1;1;1;1;1;1;1;1\n")
    typed, issues = canonicalize(read_raw(p, "measures", phq), phq)
    assert issues.empty
    assert typed.column("instrument").to_pylist() == ["PHQ-9"]
    assert typed.column("total").to_pylist() == [9.0]


@pytest.mark.parametrize(
    ("keys", "key", "says"),
    [
        (
            {"files": [{"pattern": "a*"}], "measures_pattern": "m*"},
            "(top level)",
            "files[].pattern",
        ),
        ({"layout": "wide", "instrument": "SRS"}, "(top level)", "instrument:"),
        ({"allow_total_only": ["PHQ-9"]}, "allow_total_only", "SRS, ORS"),
        ({"keep_rows": ["Rater = Client"]}, "keep_rows", "'<column> == <value>'"),
        ({"session_number_from": {"column": "e", "pattern": "session_\\d+"}}, "", "one group"),
        ({"files": [{"pattern": "a*", "header_rows": -1}]}, "", "files.0.header_rows"),
    ],
)
def test_config_mistakes_name_the_key(keys: dict[str, Any], key: str, says: str) -> None:
    data = {**LONG, **keys}
    if data.get("layout") == "wide":
        data["wide"] = {"prefixes": {"SRS": "srs"}}
    with pytest.raises(ConfigError) as e:
        parse_clinic_config(data, "tools.yaml")
    assert key in str(e.value) and says in str(e.value)


def test_a_second_episode_is_a_new_series_and_total_only_loads_only_where_allowed(
    tmp_path: Path,
) -> None:
    """Episode 2 restarting at session 1 adds rows (never a correction of episode 1); a paper
    SRS with only its total loads with blank items where the clinic allows it, and is held back
    (a missing item) where it does not."""
    columns = {**LONG["columns"], **SRS_ITEMS, "session_number": "session", "episode_id": "ep"}
    landing = tmp_path / "landing" / "tools"
    landing.mkdir(parents=True)
    head = "client,therapist,ep,date,session,i1,i2,i3,i4,total\n"
    write(landing, "measures_1.csv", head + "C1,T1,1,2025-03-03,1,9,9,9,9,36\n")
    write(landing, "measures_2.csv", head + "C1,T1,2,2025-06-02,1,,,,,31.5\n")
    strict = cfg(instrument="SRS", columns=columns)
    results = ingest.ingest_clinic(strict, tmp_path / "landing", tmp_path / "a.duckdb")
    assert [r.rows_loaded for r in results] == [1, 0]
    assert any("item_missing" in reason for reason in results[1].top_reasons)
    allowing = cfg(instrument="SRS", columns=columns, allow_total_only=["SRS"])
    ingest.ingest_clinic(allowing, tmp_path / "landing", tmp_path / "b.duckdb")
    with duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select episode_id, session_number, item_1, total from measurements order by 1"
        ).fetchall()
        superseded = con.execute("select count(*) from measurements_superseded").fetchone()
    assert rows == [("1", 1, 9.0, 36.0), ("2", 1, None, 31.5)]
    assert superseded == (0,)
