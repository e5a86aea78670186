"""Outside-style exports onboarded the documented way: files written in REDCap's, Qualtrics' and
Excel's own conventions (as their documentation and the open parsers of their exports describe
them), in variants that `config/examples/` and the simulator's tool exports do not cover; each
with a config made from its example as docs/clinic-onboarding.md says, run through the product's
CLI (`alliance-watch ingest`). The data are synthetic: 6 clients x 4 sessions of the SRS (some
exports: and the PHQ-9), every entry valid, so every entry should load; where an export says
what must load (`expected_values`), the warehouse is checked entry by entry (instrument, session,
date, total), so a value read wrong fails too. A few exports must be rejected with a reason that
names what to change (`expect_reason`).

    .venv/bin/python -m benchmarks.outside_exports [--keep DIR] [--only NAME]

Prints one line per export: OK or FAIL, rows loaded / expected, and for a failure the CLI's
table (status, rows loaded / quarantined / filtered, the reason of a rejection or the commonest
reasons rows were held back) and how many entries differ in value.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "examples"
CLIENTS = [
    f"{site}-{n}" for site, n in (("12", 3), ("12", 7), ("4", 15), ("4", 16), ("7", 2), ("7", 9))
]
SESSIONS = 4


@dataclass
class Entry:
    client: str
    clinician: str
    session: int
    day: tuple[int, int, int]  # y, m, d
    srs: list[float]
    phq: list[int]


def _entries(seed: int = 11) -> list[Entry]:
    r = random.Random(seed)
    out = []
    for i, c in enumerate(CLIENTS):
        for s in range(1, SESSIONS + 1):
            srs = [round(r.uniform(6, 10), 1) for _ in range(4)]
            phq = [r.randint(0, 3) for _ in range(9)]
            out.append(Entry(c, f"T0{1 + i % 3}", s, (2025, 3 + s, 2 + i), srs, phq))
    return out


@dataclass
class Export:
    name: str
    files: dict[str, bytes]  # file name -> bytes as the tool writes them
    config: dict  # type: ignore[type-arg]
    expected_loaded: int
    note: str = ""
    # a rejection that is the right outcome (its reason must name what to change)
    expect_reason: str = ""
    # what must load, as (instrument, session_number, session_date, total) per entry: checked
    # against the warehouse, so that a value read wrong (a date, a recoded item) is seen too
    expected_values: list[tuple[str, int, str, float]] | None = None


def _csv(rows: list[list[str]], delimiter: str = ",", newline: str = "\r\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    w.writerows(rows)
    return buf.getvalue()


def _example(name: str, **changes: object) -> dict:  # type: ignore[type-arg]
    cfg = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
    cfg.update(changes)
    return cfg


def _num(x: float, decimal: str = ".") -> str:
    text = f"{x:g}"
    return text.replace(".", decimal)


# ---------------------------------------------------------------------------------- REDCap


def _redcap_rows(
    es: list[Entry], labels: bool, date: Callable[[tuple[int, int, int]], str], decimal: str = "."
) -> list[list[str]]:
    """A longitudinal REDCap export: per record an enrollment event (no measures), then one event
    per session with the SRS and PHQ-9 forms; a data access group; a checkbox field; the forms'
    `_complete` columns. Raw: variable names, coded values; labels: field labels, choice labels,
    "Complete?" for every form's status."""
    if labels:
        head = ["Record ID", "Event Name", "Data Access Group", "Clinician code", "Session date",
                "Reason for referral (choice=Mood)", "Reason for referral (choice=Anxiety)",
                "Complete?"]  # fmt: skip
        head += ["Relationship", "Goals and topics", "Approach or method", "Overall", "Complete?"]
        head += [f"PHQ-9 item {i}" for i in range(1, 10)] + ["Complete?"]
    else:
        head = ["record_id", "redcap_event_name", "redcap_data_access_group", "clinician_code",
                "session_date", "referral___1", "referral___2", "enrollment_complete"]  # fmt: skip
        head += ["srs_1", "srs_2", "srs_3", "srs_4", "session_rating_scale_complete"]
        head += [f"phq9_{i}" for i in range(1, 10)] + ["phq9_complete"]
    rows = [head]
    done = "Complete" if labels else "2"
    by_client: dict[str, list[Entry]] = {}
    for e in es:
        by_client.setdefault(e.client, []).append(e)
    for client, items in by_client.items():
        dag = f"site_{client.split('-')[0]}"
        checked = ("Checked", "Unchecked") if labels else ("1", "0")
        enrol = "Enrollment (Arm 1: Treatment)" if labels else "enrollment_arm_1"
        rows.append([client, enrol, dag, "", "", *checked, done, *[""] * 5, *[""] * 10])
        for e in items:
            event = (
                f"Session {e.session} (Arm 1: Treatment)"
                if labels
                else f"session_{e.session}_arm_1"
            )
            rows.append(
                [client, event, dag, e.clinician, date(e.day), "", "", ""]
                + [_num(x, decimal) for x in e.srs] + [done]
                + [str(x) for x in e.phq] + [done]
            )  # fmt: skip
    return rows


def _redcap_config(labels: bool, **changes: object) -> dict:  # type: ignore[type-arg]
    cfg = _example("redcap_clinic", measures_pattern="*_DATA_*.csv")
    if labels:
        cfg["columns"] = {
            "client_id": "Record ID",
            "clinician_id": "Clinician code",
            "session_date": "Session date",
        }
        cfg["session_number_from"] = {
            "column": "Event Name",
            "pattern": r"^Session (\d+) \(Arm \d+",
        }
        cfg["wide"] = {
            "blocks": {
                "SRS": {
                    "items": ["Relationship", "Goals and topics", "Approach or method", "Overall"],
                    "keep_rows": ["Complete? == Complete"],
                },
                "PHQ-9": {
                    "items": [f"PHQ-9 item {i}" for i in range(1, 10)],
                    "keep_rows": ["Complete? == Complete"],
                },
            }
        }
    else:
        blocks = cfg["wide"]["blocks"]
        blocks.pop("GAD-7")
        for b in blocks.values():
            b.pop("total", None)
    cfg.update(changes)
    return cfg


def _iso(d: tuple[int, int, int]) -> str:
    return f"{d[0]:04d}-{d[1]:02d}-{d[2]:02d}"


def _dmy(d: tuple[int, int, int]) -> str:
    return f"{d[2]:02d}-{d[1]:02d}-{d[0]:04d}"


def _mdy(d: tuple[int, int, int]) -> str:
    return f"{d[1]:02d}-{d[2]:02d}-{d[0]:04d}"


BOM = "\ufeff"


def redcap_exports(es: list[Entry]) -> list[Export]:
    n = 2 * len(es)  # SRS and PHQ-9 per session
    raw = _redcap_rows(es, False, _iso)
    out = [
        Export(
            "REDCap raw, BOM + CRLF, DAG-prefixed record ids, checkbox ___ columns, DAG column",
            {"Study_DATA_2025-07-01_1200.csv": (BOM + _csv(raw)).encode()},
            _redcap_config(False),
            n,
        ),
        Export(
            "REDCap raw, dates exported DMY (DD-MM-YYYY)",
            {
                "Study_DATA_2025-07-01_1201.csv": (
                    BOM + _csv(_redcap_rows(es, False, _dmy))
                ).encode()
            },
            _redcap_config(False, date_format="%d-%m-%Y"),
            n,
        ),
        Export(
            "REDCap raw, dates exported MDY (MM-DD-YYYY)",
            {
                "Study_DATA_2025-07-01_1202.csv": (
                    BOM + _csv(_redcap_rows(es, False, _mdy))
                ).encode()
            },
            _redcap_config(False, date_format="%m-%d-%Y"),
            n,
        ),
        Export(
            "REDCap raw, semicolon delimiter and decimal comma (export options)",
            {
                "Study_DATA_2025-07-01_1203.csv": (
                    BOM + _csv(_redcap_rows(es, False, _iso, ","), ";")
                ).encode()
            },
            _redcap_config(False, delimiter=";", decimal=","),
            n,
        ),
        Export(
            "REDCap raw, tab delimiter",
            {"Study_DATA_2025-07-01_1204.csv": (BOM + _csv(raw, "\t")).encode()},
            _redcap_config(False, delimiter="\t"),
            n,
        ),
        Export(
            "REDCap labels export ('Complete?' header on every form)",
            {
                "Study_DATA_LABELS_2025-07-01_1205.csv": (
                    BOM + _csv(_redcap_rows(es, True, _iso))
                ).encode()
            },
            _redcap_config(True),
            0,
            expect_reason="duplicate_column",
        ),
    ]
    # repeating instrument: the session form repeats on one event; the clinician is on the
    # record's enrollment form (non-repeating), so it sits on the record's base row only
    head = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "clinician_code",
            "enrollment_complete", "session_date", "srs_1", "srs_2", "srs_3", "srs_4",
            "session_rating_scale_complete"]  # fmt: skip
    rows = [head]
    by_client: dict[str, list[Entry]] = {}
    for e in es:
        by_client.setdefault(e.client, []).append(e)
    for client, items in by_client.items():
        rows.append([client, "", "", items[0].clinician, "2", "", "", "", "", "", ""])
        for e in items:
            rows.append(
                [client, "session_rating_scale", str(e.session), "", "", _iso(e.day),
                 *[_num(x) for x in e.srs], "2"]
            )  # fmt: skip
    cfg = _example(
        "redcap_clinic",
        measures_pattern="*_DATA_*.csv",
        session_number_from={"column": "redcap_repeat_instance"},
        fill_from_client=["clinician_id"],
        wide={
            "blocks": {
                "SRS": {
                    "items": ["srs_1", "srs_2", "srs_3", "srs_4"],
                    "keep_rows": ["session_rating_scale_complete == 2"],
                }
            }
        },
    )
    out.append(
        Export(
            "REDCap repeating instrument, clinician on the record's base row",
            {"Study_DATA_2025-07-01_1206.csv": (BOM + _csv(rows)).encode()},
            cfg,
            len(es),
        )
    )
    # the same, clinician recorded on the repeating form itself
    rows2 = [head]
    for client, items in by_client.items():
        rows2.append([client, "", "", "", "2", "", "", "", "", "", ""])
        for e in items:
            rows2.append(
                [client, "session_rating_scale", str(e.session), e.clinician, "", _iso(e.day),
                 *[_num(x) for x in e.srs], "2"]
            )  # fmt: skip
    out.append(
        Export(
            "REDCap repeating instrument, clinician on the repeating form",
            {"Study_DATA_2025-07-01_1207.csv": (BOM + _csv(rows2)).encode()},
            cfg,
            len(es),
        )
    )
    return out + _redcap_more(es)


def _by_client(es: list[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {}
    for e in es:
        out.setdefault(e.client, []).append(e)
    return out


def _redcap_more(es: list[Entry]) -> list[Export]:
    """Longitudinal designs the session-named events above do not show: events named by week
    with a screening event and incomplete / unverified forms; a repeating event; survey
    timestamps as the session date."""
    out = []
    srs = ["srs_1", "srs_2", "srs_3", "srs_4"]
    phq = [f"phq9_{i}" for i in range(1, 10)]
    # events by week (week_1, week_3, ...); a screening event with the enrollment form only; a
    # follow-up event (not mapped) with an incomplete SRS and an unverified PHQ-9
    head = ["record_id", "redcap_event_name", "redcap_data_access_group", "clinician_code",
            "session_date", *srs, "session_rating_scale_complete", *phq, "phq9_complete"]  # fmt: skip
    rows = [head]
    for k, (client, items) in enumerate(_by_client(es).items()):
        dag = f"site_{client.split('-')[0]}"
        rows.append([client, "screening_arm_1", dag, "", "", *[""] * 4, "", *[""] * 9, ""])
        for e in items:
            rows.append(
                [client, f"week_{2 * e.session - 1}_arm_1", dag, e.clinician, _iso(e.day),
                 *[_num(x) for x in e.srs], "2", *[str(x) for x in e.phq], "2"]
            )  # fmt: skip
        if k == 0:
            e = items[-1]
            rows.append(
                [client, "week_9_arm_1", dag, e.clinician, "2025-08-01",
                 _num(e.srs[0]), _num(e.srs[1]), "", "", "0", *[str(x) for x in e.phq], "1"]
            )  # fmt: skip
    cfg = _redcap_config(
        False,
        session_number_from={
            "column": "redcap_event_name",
            "values": {f"week_{2 * s - 1}_arm_1": s for s in range(1, SESSIONS + 1)},
        },
    )
    out.append(
        Export(
            "REDCap longitudinal, events by week mapped by values:, a screening event, an "
            "incomplete (0) and an unverified (1) form",
            {"Study_DATA_2025-07-01_1208.csv": (BOM + _csv(rows)).encode()},
            cfg,
            2 * len(es),
            expected_values=expected(es, ("SRS", "PHQ-9")),
        )
    )
    # a repeating event: the weekly session event repeats (redcap_repeat_instrument blank,
    # redcap_repeat_instance the repeat); the clinician on the enrollment event
    head = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
            "redcap_repeat_instance", "clinician_code", "enrollment_complete", "session_date",
            *srs, "session_rating_scale_complete"]  # fmt: skip
    rows = [head]
    for client, items in _by_client(es).items():
        rows.append([client, "enrollment_arm_1", "", "", items[0].clinician, "2", "",
                     *[""] * 4, ""])  # fmt: skip
        for e in items:
            rows.append(
                [client, "weekly_session_arm_1", "", str(e.session), "", "", _iso(e.day),
                 *[_num(x) for x in e.srs], "2"]
            )  # fmt: skip
    cfg = _example(
        "redcap_clinic",
        measures_pattern="*_DATA_*.csv",
        session_number_from={"column": "redcap_repeat_instance"},
        fill_from_client=["clinician_id"],
        wide={
            "blocks": {"SRS": {"items": srs, "keep_rows": ["session_rating_scale_complete == 2"]}}
        },
    )
    out.append(
        Export(
            "REDCap repeating event (instance on the event, repeat_instrument blank), "
            "clinician on the enrollment event",
            {"Study_DATA_2025-07-01_1209.csv": (BOM + _csv(rows)).encode()},
            cfg,
            len(es),
            expected_values=expected(es, ("SRS",)),
        )
    )
    # two repeating instruments, each with its own date field: an SRS instance's row holds
    # srs_date, a PHQ-9 instance's row phq9_date; the clinician on the record's base row
    head = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "clinician_code",
            "enrollment_complete", "srs_date", *srs, "session_rating_scale_complete",
            "phq9_date", *phq, "phq9_complete"]  # fmt: skip
    rows = [head]
    for client, items in _by_client(es).items():
        rows.append([client, "", "", items[0].clinician, "2", "", *[""] * 4, "", "",
                     *[""] * 9, ""])  # fmt: skip
        for e in items:
            rows.append(
                [client, "session_rating_scale", str(e.session), "", "", _iso(e.day),
                 *[_num(x) for x in e.srs], "2", "", *[""] * 9, ""]
            )  # fmt: skip
        for e in items:
            rows.append(
                [client, "phq9", str(e.session), "", "", "", *[""] * 4, "", _iso(e.day),
                 *[str(x) for x in e.phq], "2"]
            )  # fmt: skip
    cfg = _example(
        "redcap_clinic",
        measures_pattern="*_DATA_*.csv",
        columns={"client_id": "record_id", "clinician_id": "clinician_code"},
        session_number_from={"column": "redcap_repeat_instance"},
        fill_from_client=["clinician_id"],
        wide={
            "blocks": {
                "SRS": {
                    "items": srs,
                    "session_date": "srs_date",
                    "keep_rows": ["session_rating_scale_complete == 2"],
                },
                "PHQ-9": {
                    "items": phq,
                    "session_date": "phq9_date",
                    "keep_rows": ["phq9_complete == 2"],
                },
            }
        },
    )
    out.append(
        Export(
            "REDCap two repeating instruments (SRS, PHQ-9), each with its own date field",
            {"Study_DATA_2025-07-01_1211.csv": (BOM + _csv(rows)).encode()},
            cfg,
            2 * len(es),
            expected_values=expected(es, ("SRS", "PHQ-9")),
        )
    )
    # the SRS as a survey: redcap_survey_identifier (blank), the survey's timestamp as the
    # session date, '[not completed]' on a survey left incomplete
    head = ["record_id", "redcap_event_name", "redcap_survey_identifier",
            "session_rating_scale_timestamp", "clinician_code", *srs,
            "session_rating_scale_complete"]  # fmt: skip
    rows = [head]
    for k, (client, items) in enumerate(_by_client(es).items()):
        for e in items:
            rows.append(
                [client, f"session_{e.session}_arm_1", "", f"{_iso(e.day)} 14:0{k}:31",
                 e.clinician, *[_num(x) for x in e.srs], "2"]
            )  # fmt: skip
        if k == 0:
            rows.append([client, "session_5_arm_1", "", "[not completed]", items[0].clinician,
                         "7.5", "", "", "", "0"])  # fmt: skip
    cfg = _example(
        "redcap_clinic",
        measures_pattern="*_DATA_*.csv",
        columns={
            "client_id": "record_id",
            "clinician_id": "clinician_code",
            "session_date": "session_rating_scale_timestamp",
        },
        wide={
            "blocks": {"SRS": {"items": srs, "keep_rows": ["session_rating_scale_complete == 2"]}}
        },
    )
    out.append(
        Export(
            "REDCap survey: redcap_survey_identifier, <form>_timestamp as the session date, "
            "'[not completed]' on an incomplete survey",
            {"Study_DATA_2025-07-01_1210.csv": (BOM + _csv(rows)).encode()},
            cfg,
            len(es),
            expected_values=expected(es, ("SRS",)),
        )
    )
    return out


# ------------------------------------------------------------------------------- Qualtrics

_Q_META = ["StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
           "Finished", "RecordedDate", "ResponseId", "RecipientLastName", "RecipientFirstName",
           "RecipientEmail", "ExternalReference", "LocationLatitude", "LocationLongitude",
           "DistributionChannel", "UserLanguage"]  # fmt: skip
_Q_TEXT = ["Start Date", "End Date", "Response Type", "IP Address", "Progress",
           "Duration (in seconds)", "Finished", "Recorded Date", "Response ID",
           "Recipient Last Name", "Recipient First Name", "Recipient Email",
           "External Data Reference", "Location Latitude", "Location Longitude",
           "Distribution Channel", "User Language"]  # fmt: skip
_Q_IMPORT = ['{"ImportId":"startDate","timeZone":"America/Denver"}',
             '{"ImportId":"endDate","timeZone":"America/Denver"}', '{"ImportId":"status"}',
             '{"ImportId":"ipAddress"}', '{"ImportId":"progress"}', '{"ImportId":"duration"}',
             '{"ImportId":"finished"}', '{"ImportId":"recordedDate","timeZone":"America/Denver"}',
             '{"ImportId":"_recordId"}', '{"ImportId":"recipientLastName"}',
             '{"ImportId":"recipientFirstName"}', '{"ImportId":"recipientEmail"}',
             '{"ImportId":"externalDataReference"}', '{"ImportId":"locationLatitude"}',
             '{"ImportId":"locationLongitude"}', '{"ImportId":"distributionChannel"}',
             '{"ImportId":"userLanguage"}']  # fmt: skip


def _qualtrics(
    es: list[Entry], numeric: bool, multiline_text: bool, stamp: Callable[[Entry], str]
) -> list[list[str]]:
    qtext = "How well did we understand you today?"
    if multiline_text:
        qtext = "Please rate today's session.\nHow well did we understand you today?"
    head = [*_Q_META, "Q1_1", "Q1_2", "Q1_3", "Q1_4", "client_code", "clinician_code", "session"]
    text = [*_Q_TEXT, *(f"{qtext} - {p}" for p in ("Relationship", "Goals", "Approach", "Overall")),
            "client_code", "clinician_code", "session"]  # fmt: skip
    imports = [*_Q_IMPORT, *(f'{{"ImportId":"QID1_{i}"}}' for i in range(1, 5)),
               '{"ImportId":"client_code"}', '{"ImportId":"clinician_code"}',
               '{"ImportId":"session"}']  # fmt: skip
    rows = [head, text, imports]
    r = random.Random(5)
    for k, e in enumerate(es):
        status = "0" if numeric else "IP Address"
        finished = "1" if numeric else "True"
        t = stamp(e)
        rows.append(
            [t, t, status, "", "100", str(r.randint(40, 300)), finished, t,
             "R_" + "".join(r.choice("abcdefghijkLMNOPQRS0123456789") for _ in range(15)),
             "", "", "", "", "", "", "anonymous", "EN",
             *[_num(x) for x in e.srs], e.client, e.clinician, str(e.session)]
        )  # fmt: skip
        if k == 0:  # a preview and an unfinished response, which must not load
            prev = list(rows[-1])
            prev[2] = "1" if numeric else "Survey Preview"
            rows.append(prev)
            part = list(rows[-2])
            part[6] = "0" if numeric else "False"
            part[4] = "50"
            rows.append(part)
    return rows


def _qualtrics_config(numeric: bool, **changes: object) -> dict:  # type: ignore[type-arg]
    cfg = _example("qualtrics_clinic", measures_pattern="Session Feedback*.csv")
    cfg["columns"] = {
        "client_id": "client_code",
        "clinician_id": "clinician_code",
        "session_date": "RecordedDate",
        "session_number": "session",
    }
    cfg.pop("session_number_from")
    cfg["wide"]["blocks"].pop("ORS")
    if numeric:  # what the example's comment says for "Use numeric values"
        cfg["keep_rows"] = ["Status == 0", "Finished == 1"]
    cfg.update(changes)
    return cfg


def _qstamp(e: Entry) -> str:
    return f"{_iso(e.day)} 14:{e.session:02d}:07"


def _qstamp_iso(e: Entry) -> str:
    return f"{_iso(e.day)}T14:{e.session:02d}:07"


def _qstamp_excel(e: Entry) -> str:
    return f"{e.day[1]}/{e.day[2]}/{e.day[0]} 14:{e.session:02d}"


def qualtrics_exports(es: list[Entry]) -> list[Export]:
    n = len(es)
    out = [
        Export(
            "Qualtrics CSV, numeric values, 3 header rows, default metadata columns (blank "
            "Recipient*/Location*/IPAddress)",
            {
                "Session Feedback_July 1, 2025_12.00.csv": (
                    BOM + _csv(_qualtrics(es, True, False, _qstamp))
                ).encode()
            },
            _qualtrics_config(True),
            n,
        ),
        Export(
            "Qualtrics CSV, choice text, 3 header rows, question text with a line break",
            {
                "Session Feedback_July 1, 2025_12.01.csv": (
                    BOM + _csv(_qualtrics(es, False, True, _qstamp))
                ).encode()
            },
            _qualtrics_config(False),
            n,
        ),
    ]
    out.append(
        Export(
            "Qualtrics, timestamps as 2025-04-02T14:01:07 (API / qualtRics), date_format '%Y-%m-%d'",
            {
                "Session Feedback_iso.csv": (
                    BOM + _csv(_qualtrics(es, True, False, _qstamp_iso))
                ).encode()
            },
            _qualtrics_config(True, date_format="%Y-%m-%d"),
            n,
        )
    )
    # the example config as it stands, with a "Use numeric values" export (its own comment
    # says numeric values): Status 0/1, Finished 1/0
    rows = _qualtrics(es, True, False, _qstamp)
    meta_cut = [c for c in _Q_META if c not in ("IPAddress", "RecipientLastName",
                "RecipientFirstName", "RecipientEmail", "ExternalReference",
                "LocationLatitude", "LocationLongitude")]  # fmt: skip
    keep = [i for i, h in enumerate(rows[0]) if h in meta_cut or h not in _Q_META]
    trimmed = [[row[i] for i in keep] for row in rows]
    ex = _example("qualtrics_clinic")
    ex["wide"]["blocks"].pop("ORS")
    out.append(
        Export(
            "Qualtrics numeric values, identifying metadata columns removed, config/examples/"
            "qualtrics_clinic.yaml as it stands",
            {"Session Feedback_July 1, 2025_12.02.csv": (BOM + _csv(trimmed)).encode()},
            ex,
            n,
        )
    )
    # legacy export: V1..V10 headers, question texts as the second row
    legacy_head = ["V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9", "V10",
                   "Q1_1", "Q1_2", "Q1_3", "Q1_4", "client_code", "clinician_code", "session"]  # fmt: skip
    legacy_text = ["ResponseID", "ResponseSet", "Name", "ExternalDataReference", "EmailAddress",
                   "IPAddress", "Status", "StartDate", "EndDate", "Finished",
                   "Relationship", "Goals", "Approach", "Overall", "client_code",
                   "clinician_code", "session"]  # fmt: skip
    lrows = [legacy_head, legacy_text]
    for e in es:
        t = _qstamp(e)
        lrows.append(
            ["R_x" + e.client, "Default Response Set", "Anonymous", "", "", "", "0", t, t, "1",
             *[_num(x) for x in e.srs], e.client, e.clinician, str(e.session)]
        )  # fmt: skip
    out.append(
        Export(
            "Qualtrics legacy export (V1..V10 + 1 question-text row)",
            {"Session Feedback_legacy.csv": _csv(lrows).encode()},
            _qualtrics_config(
                True,
                header_rows=1,
                columns={
                    "client_id": "client_code",
                    "clinician_id": "clinician_code",
                    "session_date": "V8",
                    "session_number": "session",
                },
                keep_rows=["V7 == 0", "V10 == 1"],
            ),  # fmt: skip
            n,
        )
    )
    # opened in Excel and saved as "Unicode Text": UTF-16 LE with BOM, tabs, Excel's dates
    xrows = _qualtrics(es, True, False, _qstamp_excel)
    out.append(
        Export(
            "Qualtrics export re-saved by Excel as Unicode Text (UTF-16 LE, tab, M/D/YYYY H:MM)",
            {"Session Feedback_excel.csv": _csv(xrows, "\t").encode("utf-16")},
            _qualtrics_config(
                True, delimiter="\t", encoding="utf-16", date_format="%m/%d/%Y %H:%M"
            ),
            n,
        )
    )
    return out + _qualtrics_more(es)


PHQ_LABELS = ["Not at all", "Several days", "More than half the days", "Nearly every day"]


def _qualtrics_phq(es: list[Entry], how: str) -> list[list[str]]:
    """`_qualtrics` numeric export with a PHQ-9 matrix (Q2_1..Q2_9) after the SRS: its answers
    as choice text (`how="text"`) or as Qualtrics' default recodes 1-4 (`how="recode"`), which
    a survey author who did not recode to 0-3 exports."""
    rows = _qualtrics(es, how != "text", False, _qstamp)
    rows[0] += [f"Q2_{i}" for i in range(1, 10)]
    rows[1] += [f"Over the last 2 weeks... - item {i}" for i in range(1, 10)]
    rows[2] += [f'{{"ImportId":"QID2_{i}"}}' for i in range(1, 10)]
    # data rows: e0, its preview, its unfinished copy, then e1, e2, ...
    owners = [es[0], es[0], *es]
    for row, e in zip(rows[3:], owners, strict=True):
        row += [PHQ_LABELS[x] if how == "text" else str(x + 1) for x in e.phq]
    return rows


def _qualtrics_more(es: list[Entry]) -> list[Export]:
    out = []
    phq_block = {"items": [f"Q2_{i}" for i in range(1, 10)]}
    for how, title in (
        ("text", "Qualtrics choice text, PHQ-9 answers as labels ('Not at all' .. 'Nearly every day')"),
        ("recode", "Qualtrics numeric values, PHQ-9 with Qualtrics' default recodes 1-4 (not 0-3)"),
    ):  # fmt: skip
        cfg = _qualtrics_config(how != "text")
        cfg["wide"]["blocks"]["PHQ-9"] = dict(phq_block)
        cfg["instruments"] = {"SRS": "3.0", "PHQ-9": "1.0"}
        # what the export writes for each answer, as docs/clinic-onboarding.md says
        answers = PHQ_LABELS if how == "text" else ["1", "2", "3", "4"]
        cfg["item_values"] = {"PHQ-9": {a: k for k, a in enumerate(answers)}}
        out.append(
            Export(
                title,
                {f"Session Feedback_phq_{how}.csv": (BOM + _csv(_qualtrics_phq(es, how))).encode()},
                cfg,
                2 * len(es),
                expected_values=expected(es, ("SRS", "PHQ-9")),
            )
        )
    # Qualtrics' own "TSV" download: UTF-16 LE with a BOM, tabs, the 3 header rows, question
    # texts with line breaks
    out.append(
        Export(
            "Qualtrics TSV download (UTF-16 LE, tab, 3 header rows, multi-line question text)",
            {
                "Session Feedback_July 1, 2025_12.03.tsv": _csv(
                    _qualtrics(es, True, True, _qstamp), "\t"
                ).encode("utf-16")
            },
            _qualtrics_config(
                True, delimiter="\t", encoding="utf-16", measures_pattern="Session Feedback*.tsv"
            ),
            len(es),
            expected_values=expected(es, ("SRS",)),
        )
    )
    return out


# ------------------------------------------------------------------------- generic / Excel


def _reference_rows(es: list[Entry], decimal: str = ".") -> list[list[str]]:
    head = ["client_id", "clinician_id", "session_date", "session_number", "instrument",
            *[f"item_{i}" for i in range(1, 13)], "total"]  # fmt: skip
    rows = [head]
    for e in es:
        rows.append(
            [e.client, e.clinician, _iso(e.day), str(e.session), "SRS",
             *[_num(x, decimal) for x in e.srs], *[""] * 8, ""]
        )  # fmt: skip
    return rows


def generic_exports(es: list[Entry]) -> list[Export]:
    n = len(es)
    ref = {"clinic_id": "outside", "timezone": "Europe/Berlin", "format": "reference"}
    custom = {**ref, "format": "custom"}
    rows = _reference_rows(es)
    return [
        Export("reference CSV with a UTF-8 BOM (3-key config)",
               {"measures_bom.csv": (BOM + _csv(rows, ",", "\n")).encode()}, ref, n),
        Export("reference CSV with CRLF (3-key config)",
               {"measures_crlf.csv": _csv(rows).encode()}, ref, n),
        Export("reference CSV with lone CR line ends (old Mac Excel)",
               {"measures_cr.csv": _csv(rows, ",", "\r").encode()}, ref, n),
        Export("TSV (delimiter: tab)",
               {"measures_tab.tsv": _csv(rows, "\t").encode()},
               {**custom, "delimiter": "\t", "measures_pattern": "measures*"}, n),
        Export("semicolon CSV, decimal comma, cp1252 (Excel 'CSV (Trennzeichen-getrennt)')",
               {"measures_semi.csv": _csv(_reference_rows(es, ","), ";").encode("cp1252")},
               {**custom, "delimiter": ";", "decimal": ",", "encoding": "cp1252"}, n),
        Export("UTF-16 LE with BOM, tab (Excel 'Unicode Text')",
               {"measures_u16.txt": _csv(rows, "\t").encode("utf-16")},
               {**custom, "delimiter": "\t", "encoding": "utf-16", "measures_pattern": "measures*"}, n),
        Export("UTF-16 LE with BOM, comma, encoding left at utf-8 (a first try)",
               {"measures_u16b.csv": _csv(rows).encode("utf-16")}, ref, n),
    ] + _generic_more(es)  # fmt: skip


_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _generic_more(es: list[Entry]) -> list[Export]:
    """Statistics packages and scripts: SPSS' CSV (SAVE TRANSLATE /TYPE=CSV /TEXTOPTIONS
    FORMAT=VARIABLE writes each value in its display format: F8.2 numbers as 3.00, DATE11
    dates as 02-APR-2025) and a pandas to_csv of a column with blanks (3.0)."""
    head = ["client", "therapist", "sdate", "session", "instr",
            *[f"item{i}" for i in range(1, 13)], "total"]  # fmt: skip
    rows = [head]
    for e in es:
        y, m, d = e.day
        rows.append(
            [e.client, e.clinician, f"{d:02d}-{_MONTHS[m - 1]}-{y}", f"{e.session:.2f}", "SRS",
             *[f"{x:.2f}" for x in e.srs], *[""] * 8, ""]
        )  # fmt: skip
    spss = {
        "clinic_id": "outside",
        "timezone": "Europe/Berlin",
        "format": "custom",
        "date_format": "%d-%b-%Y",
        "columns": {
            "client_id": "client",
            "clinician_id": "therapist",
            "session_date": "sdate",
            "session_number": "session",
            "instrument": "instr",
            **{f"item_{i}": f"item{i}" for i in range(1, 13)},
            "total": "total",
        },
    }
    ref = _reference_rows(es)
    # a workbook delivered as it is, not saved as CSV: .xlsx (a zip of XML parts) and Excel
    # 97-2003 .xls (an OLE2 compound file); the right outcome is a rejection that says so
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr("xl/workbook.xml", '<?xml version="1.0"?><workbook/>')
        z.writestr("xl/worksheets/sheet1.xml", _csv(ref))
    xls = bytes.fromhex("D0CF11E0A1B11AE1") + bytes(504) + _csv(ref).encode("utf-16-le")
    three_keys = {"clinic_id": "outside", "timezone": "Europe/Berlin", "format": "reference"}
    workbooks = [
        Export(
            "Excel workbook delivered as .xlsx (not saved as CSV)",
            {"measures_2025-07.xlsx": buf.getvalue()},
            three_keys,
            0,
            expect_reason="Excel workbook",
        ),
        Export(
            "Excel 97-2003 workbook delivered as .xls",
            {"measures_2025-07.xls": xls},
            three_keys,
            0,
            expect_reason="Excel 97-2003 workbook",
        ),
    ]
    pandas_rows = [ref[0]] + [[*r[:3], f"{float(r[3])}", *r[4:]] for r in ref[1:]]
    return [
        Export(
            "SPSS CSV (FORMAT=VARIABLE): session numbers and items as F8.2 (3.00), DATE11 "
            "dates (02-APR-2025)",
            {"measures_spss.csv": _csv(rows).encode()},
            spss,
            len(es),
            expected_values=expected(es, ("SRS",)),
        ),
        Export(
            "pandas to_csv: session numbers as floats (3.0), LF (3-key config)",
            {"measures_pandas.csv": _csv(pandas_rows, ",", "\n").encode()},
            {"clinic_id": "outside", "timezone": "Europe/Berlin", "format": "reference"},
            len(es),
            expected_values=expected(es, ("SRS",)),
        ),
        *workbooks,
    ]


def split_exports(es: list[Entry]) -> list[Export]:
    srs = [["client", "therapist", "date", "session", "relationship", "goals", "approach",
            "overall", "total"]]  # fmt: skip
    phq = [["client", "therapist", "date", "session", *[f"phq9_{i}" for i in range(1, 10)],
            "phq9_total"]]  # fmt: skip
    for e in es:
        srs.append([e.client, e.clinician, _iso(e.day), str(e.session), *map(_num, e.srs), ""])
        phq.append([e.client, e.clinician, _iso(e.day), str(e.session), *map(str, e.phq), ""])
    cfg = _example("split_clinic")
    cfg["files"] = [f for f in cfg["files"] if f["instrument"] != "GAD-7"]
    cfg["files"][1]["delimiter"] = ";"
    return [
        Export(
            "one file per instrument, one of them semicolon-separated with a BOM",
            {
                "srs_2025-07.csv": _csv(srs).encode(),
                "phq9_2025-07.csv": (BOM + _csv(phq, ";")).encode(),
            },
            cfg,
            2 * len(es),
        )
    ] + _split_more(es)


def _excel_serial(d: tuple[int, int, int]) -> str:
    import datetime as dt

    return str((dt.date(*d) - dt.date(1899, 12, 30)).days)


def _split_more(es: list[Entry]) -> list[Export]:
    """One-file-per-instrument systems and spreadsheet leftovers."""
    out = []
    cfg = _example("split_clinic")
    cfg["files"] = [f for f in cfg["files"] if f["instrument"] != "GAD-7"]
    # each file names the client column its own way
    srs = [["client", "therapist", "date", "session", "relationship", "goals", "approach",
            "overall", "total"]]  # fmt: skip
    phq = [["Client Code", "Therapist Code", "Date Completed", "Visit", *[f"phq9_{i}" for i in range(1, 10)],
            "phq9_total"]]  # fmt: skip
    for e in es:
        srs.append([e.client, e.clinician, _iso(e.day), str(e.session), *map(_num, e.srs), ""])
        phq.append([e.client, e.clinician, _iso(e.day), str(e.session), *map(str, e.phq), ""])
    named = yaml.safe_load(yaml.safe_dump(cfg))
    named["files"][1]["columns"].update(
        {"client_id": "Client Code", "clinician_id": "Therapist Code",
         "session_date": "Date Completed", "session_number": "Visit"}
    )  # fmt: skip
    out.append(
        Export(
            "one file per instrument, the key columns named differently in each file",
            {"srs_2025-08.csv": _csv(srs).encode(), "phq9_2025-08.csv": _csv(phq).encode()},
            named,
            2 * len(es),
            expected_values=expected(es, ("SRS", "PHQ-9")),
        )
    )
    # dates as Excel serial day numbers (a sheet whose date column lost its format), European
    # Excel: semicolons, decimal comma
    srs_x = [srs[0]] + [
        [e.client, e.clinician, _excel_serial(e.day), str(e.session), *[_num(x, ",") for x in e.srs], ""]
        for e in es
    ]  # fmt: skip
    phq_x = [phq[0][:0] + srs[0][:4] + phq[0][4:]] + [
        [e.client, e.clinician, _excel_serial(e.day), str(e.session), *map(str, e.phq), ""]
        for e in es
    ]  # fmt: skip
    serial = yaml.safe_load(yaml.safe_dump(cfg))
    serial.update(delimiter=";", decimal=",", date_format="excel")
    out.append(
        Export(
            "one file per instrument, dates as Excel serial numbers (45749), ';' and decimal comma",
            {
                "srs_2025-09.csv": _csv(srs_x, ";").encode(),
                "phq9_2025-09.csv": _csv(phq_x, ";").encode(),
            },
            serial,
            2 * len(es),
            expected_values=expected(es, ("SRS", "PHQ-9")),
        )
    )
    # a sheet saved as CSV: trailing empty columns (header and rows end in ',,'), and a
    # summary row at the end
    rows = [[*r, "", ""] for r in _reference_rows(es)]
    rows.append(
        ["Total", "", "", "", "", *[""] * 12, _num(round(sum(sum(e.srs) for e in es), 1)), "", ""]
    )
    out.append(
        Export(
            "spreadsheet CSV with trailing empty columns and a 'Total' summary row",
            {"measures_sheet.csv": _csv(rows).encode()},
            {"clinic_id": "outside", "timezone": "Europe/Berlin", "format": "reference"},
            len(es),
            expected_values=expected(es, ("SRS",)),
        )
    )
    return out


# ---------------------------------------------------------------------------------- running


def _run(export: Export, base: Path) -> dict:  # type: ignore[type-arg]
    cfg = dict(export.config)
    cfg["clinic_id"] = "outside"
    conf = base / "config" / "clinics"
    land = base / "landing" / "outside"
    conf.mkdir(parents=True)
    land.mkdir(parents=True)
    (conf / "outside.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for name, data in export.files.items():
        (land / name).write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--config-dir", str(base / "config"),
         "--landing", str(base / "landing"), "--warehouse", str(base / "wh.duckdb"), "--quiet"],
        capture_output=True, text=True, cwd=base, check=False,
    )  # fmt: skip
    cells = [
        re.split(r"\s{2,}", ln) for ln in proc.stdout.splitlines() if ln.startswith("outside ")
    ]
    loaded = sum(int(c[4]) for c in cells if len(c) > 4 and c[4].isdigit())
    reasons = " ".join(c[-1] for c in cells)
    ok = loaded == export.expected_loaded and (
        not export.expect_reason or export.expect_reason in reasons
    )
    wrong = _wrong_values(export, base / "wh.duckdb") if export.expected_values else 0
    ok = ok and not wrong
    return {
        "export": export.name,
        "expected_loaded": export.expected_loaded,
        "loaded": loaded,
        "ok": ok,
        "wrong_values": wrong,
        "exit": proc.returncode,
        "table": proc.stdout.strip().splitlines(),
        "stderr": proc.stderr.strip().splitlines()[-3:],
    }


def _wrong_values(export: Export, warehouse: Path) -> int:
    """How many of the expected (instrument, session, date, total) entries the warehouse does not
    hold, plus the loaded ones not expected (counts only: no value is shown)."""
    import duckdb

    if not warehouse.exists():
        return len(export.expected_values or [])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        got = con.execute(
            "select instrument, session_number, strftime(session_date, '%Y-%m-%d'), "
            "round(total, 2) from measurements"
        ).fetchall()
    want = [(i, s, d, round(t, 2)) for i, s, d, t in export.expected_values or []]
    from collections import Counter

    diff = (Counter(want) - Counter(got)) + (Counter(got) - Counter(want))
    return sum(diff.values())


def expected(es: list[Entry], instruments: tuple[str, ...]) -> list[tuple[str, int, str, float]]:
    out = []
    for e in es:
        if "SRS" in instruments:
            out.append(("SRS", e.session, _iso(e.day), round(sum(e.srs), 1)))
        if "PHQ-9" in instruments:
            out.append(("PHQ-9", e.session, _iso(e.day), float(sum(e.phq))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, default=None, help="keep the exports and warehouses here")
    ap.add_argument("--only", default=None, help="run the exports whose name contains this")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    es = _entries()
    exports = [
        *redcap_exports(es),
        *qualtrics_exports(es),
        *generic_exports(es),
        *split_exports(es),
    ]
    if args.only:
        exports = [e for e in exports if args.only.lower() in e.name.lower()]
    results = []
    with tempfile.TemporaryDirectory(prefix="aw_outside_exports_") as tmp:
        root = args.keep or Path(tmp)
        for i, export in enumerate(exports):
            res = _run(export, root / f"e{i:02d}")
            results.append(res)
            mark = "OK  " if res["ok"] else "FAIL"
            print(f"{mark} {res['loaded']:>3}/{res['expected_loaded']:<3} {export.name}")
            if res["wrong_values"]:
                print(f"        {res['wrong_values']} loaded or expected entries differ in value")
            if not res["ok"]:
                for ln in res["table"][1:] or res["stderr"]:
                    print(f"        {ln}")
    if args.out:
        args.out.write_text(
            json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
