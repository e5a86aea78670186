"""Simulated exports in the exact conventions of the tools clinics use (issue #17), with the
config each needs (`config/examples/`) and what the pipeline must make of them.

Five styles, each a sample clinic (`TOOL_CLINICS`, `alliance-watch generate --tool-exports`):

* ``excel_de``: Excel "CSV UTF-8" in a German locale: BOM, ``;``, decimal comma, CRLF,
  ``DD.MM.YYYY``, instrument labels ``PHQ9``/``GAD7``, and the rows of bare ``;`` that
  spreadsheets leave at the end (skipped and counted as blank rows).
* ``pcoms_fit``: PCOMS/FIT outcome software, wide: "SRS Relationship" ... "ORS Overall", ``M/D/YYYY``,
  a ``Rater`` column (a parent's ORS is a collateral rating, filtered), an ``Episode`` column
  (``Session #`` restarts at 1 in a client's second episode) and total-only paper entries.
* ``redcap``: a REDCap longitudinal raw export: ``record_id``, ``redcap_event_name``
  (``session_3_arm_1``), ``redcap_repeat_instrument``/``redcap_repeat_instance``, PHQ-9 / GAD-7
  with the instrument library's field names (``phq9_1..9``, ``gad7_1..7``), an SRS form, and each
  form's ``<form>_complete`` (0 incomplete, 1 unverified, 2 complete: only 2 loads).
* ``qualtrics``: a Qualtrics CSV: 3 header rows (ids, question text, ImportId JSON), StartDate /
  EndDate / RecordedDate with times, Status (previews), Progress, Finished (unfinished
  responses), ResponseId, embedded data for the codes; no session number (derived from the order
  of RecordedDate).
* ``per_instrument``: one file per instrument (``srs_*.csv``, ``phq9_*.csv``, ``gad7_*.csv``),
  each with its own columns, one clinic (`files:`).

`write_tool_clinic` writes the config, the landing files, and what ingest must report: the
canonical rows that load (``canonical/<clinic>.measures.parquet``, with ``episode_id``) and the
rows that never load, by reason (``canonical/<clinic>.filtered.json``). The styles change the
simulated cohort where the tool does (episodes, total-only entries, REDCap record ids, Qualtrics
session numbers by date order), so their ground truth (`truth.csv`) serves ingest round trips, not
detection evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from pipelines import registry
from pipelines.ingest.read import BLANK_ROW
from pipelines.simulate.cohort import ClinicSpec, Cohort
from pipelines.simulate.exporters import PCOMS_BLOCKS, PCOMS_COLUMNS

TOOL_STYLES: tuple[str, ...] = ("excel_de", "pcoms_fit", "redcap", "qualtrics", "per_instrument")
TOOL_CLINICS: tuple[ClinicSpec, ...] = (
    ClinicSpec("excel_praxis", "excel_de", "SRS", ("PHQ-9", "GAD-7"), "Europe/Berlin"),
    ClinicSpec("fit_clinic", "pcoms_fit", "SRS", ("ORS",), "America/Chicago"),
    ClinicSpec("redcap_clinic", "redcap", "SRS", ("PHQ-9", "GAD-7"), "America/New_York"),
    ClinicSpec("qualtrics_clinic", "qualtrics", "SRS", ("ORS",), "America/Denver"),
    ClinicSpec("split_clinic", "per_instrument", "SRS", ("PHQ-9", "GAD-7"), "America/Phoenix"),
)
ITEMS = list(registry.ITEM_COLUMNS)


def filtered_reason(condition: str, where: str = "keep_rows") -> str:
    """The reason ingest counts a row a condition excludes under (pipelines.ingest.read)."""
    return f"filtered: {where} {condition!r} not met"


@dataclass
class ToolExport:
    files: list[Path]
    canonical: pd.DataFrame  # the rows that load (canonical columns and episode_id)
    filtered: dict[str, int]  # rows that never load, by the reason ingest gives


# ---- formatting helpers -----------------------------------------------------------------------


def _num(values: pd.Series, decimal: str = ".") -> list[str]:
    arr = pc.cast(pa.array(values, pa.float64(), from_pandas=True), pa.string())
    if decimal == ",":
        arr = pc.replace_substring(arr, ".", ",")
    return [v if v is not None else "" for v in arr.to_pylist()]


def _date(values: pd.Series, fmt: str) -> list[str]:
    ts = pc.cast(pa.array(values, pa.date32()), pa.timestamp("s"))
    return pc.strftime(ts, format=fmt).to_pylist()


def _csv(frame: pd.DataFrame, delimiter: str = ",", line_end: str = "\n") -> str:
    return frame.to_csv(index=False, sep=delimiter, lineterminator=line_end)


def _periods(dates: pd.Series, period: str) -> np.ndarray:
    if period == "all":
        return np.full(len(dates), "all", dtype=object)
    p = pd.to_datetime(dates).dt.to_period("M" if period == "month" else "Q")
    return p.astype(str).to_numpy()


def _rng(spec: ClinicSpec) -> np.random.Generator:
    return np.random.default_rng(sum(ord(c) * (i + 1) for i, c in enumerate(spec.clinic_id)))


def _common(spec: ClinicSpec, clinicians: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config's first keys and its last (data-use agreement, clinicians, data team)."""
    domain = spec.clinic_id.replace("_", "-") + ".invalid"
    head = {"clinic_id": spec.clinic_id, "timezone": spec.timezone, "format": "custom"}
    tail = {
        "limited_data_set": {"agreement_id": f"DUA-SIM-{spec.clinic_id.upper()}", "signed": True},
        "clinicians": {c: f"{c.lower()}@{domain}" for c in sorted(clinicians)},
        "notifications": {"data_team_email": f"data-team@{domain}"},
    }
    return head, tail


def _canonical(m: pd.DataFrame) -> pd.DataFrame:
    m = m.copy()
    if "episode_id" not in m.columns:
        m["episode_id"] = ""
    return m.reset_index(drop=True)


# ---- Excel "CSV UTF-8", German locale ---------------------------------------------------------

EXCEL_COLUMNS = {
    "client_id": "Klient",
    "clinician_id": "Therapeut",
    "session_date": "Datum",
    "session_number": "Sitzung",
    "instrument": "Fragebogen",
    **{f"item_{i}": f"Item {i}" for i in range(1, 10)},
    "total": "Summe",
}
EXCEL_LABELS = {"PHQ9": "PHQ-9", "GAD7": "GAD-7"}
EXCEL_TRAILING_BLANK_ROWS = 3


def _excel_de(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> ToolExport:
    m = c.measures
    inverse = {v: k for k, v in EXCEL_LABELS.items()}
    files: list[Path] = []
    filtered = 0
    for key, part in m.groupby(_periods(m["session_date"], period), sort=True):
        out = pd.DataFrame(
            {
                "Klient": part["client_id"].to_numpy(),
                "Therapeut": part["clinician_id"].to_numpy(),
                "Datum": _date(part["session_date"], "%d.%m.%Y"),
                "Sitzung": part["session_number"].astype(int).astype(str).to_numpy(),
                "Fragebogen": part["instrument"].map(lambda x: inverse.get(x, x)).to_numpy(),
                **{f"Item {i}": _num(part[f"item_{i}"], ",") for i in range(1, 10)},
                "Summe": _num(part["total"], ","),
            }
        )
        text = _csv(out, ";", "\r\n")
        text += (";" * (out.shape[1] - 1) + "\r\n") * EXCEL_TRAILING_BLANK_ROWS
        path = d / f"Export_{key}.csv"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        files.append(path)
        filtered += EXCEL_TRAILING_BLANK_ROWS
    return ToolExport(files, _canonical(m), {BLANK_ROW: filtered})


def _excel_de_config() -> dict[str, Any]:
    return {
        "delimiter": ";",
        "decimal": ",",
        "encoding": "utf-8",
        "date_format": "%d.%m.%Y",
        "measures_pattern": "Export_*.csv",
        "columns": EXCEL_COLUMNS,
        "instrument_values": EXCEL_LABELS,
    }


# ---- PCOMS / FIT outcome software -------------------------------------------------------------

# the sample PCOMS clinic's wide layout, with the treatment episode the FIT software exports
FIT_COLUMNS = {**PCOMS_COLUMNS, "episode_id": "Episode"}
FIT_BLOCKS = PCOMS_BLOCKS
FIT_KEEP = "Rater == Client"
FIT_COLLATERAL = ("Parent", "Teacher", "Partner")


def _fit_cohort(m: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Second episodes (a third of the clients with 8+ sessions restart `Session #` at 1 halfway)
    and total-only paper entries (about 6 %, items blank)."""
    m = m.sort_values(["client_id", "session_number", "instrument"], kind="stable").copy()
    n_sess = m.groupby("client_id")["session_number"].transform("max")
    long_clients = sorted(m.loc[n_sess >= 8, "client_id"].unique())
    second = set(long_clients[::3])
    half = (n_sess // 2).astype(int)
    in_second = m["client_id"].isin(second) & (m["session_number"] > half)
    m["episode_id"] = np.where(in_second, "2", "1")
    m["session_number"] = np.where(in_second, m["session_number"] - half, m["session_number"])
    paper = rng.random(len(m)) < 0.06
    m.loc[paper, ITEMS] = np.nan
    return m.reset_index(drop=True)


def _fit_lines(m: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    keys = ["client_id", "clinician_id", "episode_id", "session_date", "session_number"]
    lines = m[keys].drop_duplicates().sort_values(["session_date", "client_id"], kind="stable")
    lines = lines.assign(Rater="Client").reset_index(drop=True)
    blocks: dict[str, pd.DataFrame] = {}
    for code in FIT_BLOCKS:
        own = m[m["instrument"] == code]
        blocks[code] = lines[keys].merge(own, on=keys, how="left", validate="one_to_one")
    # a collateral rater's ORS on some sessions: its own line, right after the client's
    ors = blocks["ORS"]
    has_ors = ors["total"].notna().to_numpy()
    collateral = np.flatnonzero(has_ors & (rng.random(len(lines)) < 0.08))
    extra = lines.iloc[collateral].copy()
    extra["Rater"] = rng.choice(FIT_COLLATERAL, len(extra))
    extra_ors = ors.iloc[collateral].copy()
    shift = rng.uniform(-3, 3, (len(extra), 4)).round(1)
    extra_ors[ITEMS[:4]] = np.clip(extra_ors[ITEMS[:4]].to_numpy() + shift, 0, 10)
    complete = extra_ors[ITEMS[:4]].notna().all(axis=1)
    sums = np.round(extra_ors[ITEMS[:4]].sum(axis=1), 1)
    extra_ors["total"] = np.where(complete, sums, extra_ors["total"])
    order = np.concatenate([np.arange(len(lines)), collateral + 0.5])
    all_lines = pd.concat([lines, extra], ignore_index=True)
    srs_extra = blocks["SRS"].iloc[collateral].copy()
    srs_extra[[*ITEMS, "total"]] = np.nan
    all_blocks = {
        "SRS": pd.concat([blocks["SRS"], srs_extra], ignore_index=True),
        "ORS": pd.concat([ors, extra_ors], ignore_index=True),
    }
    sort = np.argsort(order, kind="stable")
    out = pd.DataFrame(
        {
            "Client ID": all_lines["client_id"].to_numpy()[sort],
            "Clinician": all_lines["clinician_id"].to_numpy()[sort],
            "Episode": all_lines["episode_id"].to_numpy()[sort],
            "Rater": all_lines["Rater"].to_numpy()[sort],
            # PCOMS writes US dates without leading zeros: 3/4/2025
            "Session Date": [
                f"{d.month}/{d.day}/{d.year}"
                for d in pd.to_datetime(all_lines["session_date"]).iloc[sort]
            ],
            "Session #": all_lines["session_number"].astype(int).astype(str).to_numpy()[sort],
        }
    )
    for code, (items, total) in FIT_BLOCKS.items():
        b = all_blocks[code].iloc[sort]
        for j, header in enumerate(items):
            out[header] = _num(b[ITEMS[j]])
        out[total] = _num(b["total"])
    return out, len(collateral)


def _pcoms_fit(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> ToolExport:
    rng = _rng(spec)
    m = _fit_cohort(c.measures, rng)
    files: list[Path] = []
    n_collateral = 0
    for key, part in m.groupby(_periods(m["session_date"], period), sort=True):
        out, n = _fit_lines(part, rng)
        n_collateral += n
        path = d / f"FIT_export_{key}.csv"
        path.write_text(_csv(out), encoding="utf-8")
        files.append(path)
    return ToolExport(files, _canonical(m), {filtered_reason(FIT_KEEP): n_collateral})


def _pcoms_fit_config() -> dict[str, Any]:
    return {
        "layout": "wide",
        "date_format": "%m/%d/%Y",
        "measures_pattern": "FIT_export_*.csv",
        "columns": FIT_COLUMNS,
        "keep_rows": [FIT_KEEP],
        "allow_total_only": ["SRS", "ORS"],
        "wide": {
            "blocks": {
                code: {"items": items, "total": total}
                for code, (items, total) in FIT_BLOCKS.items()
            }
        },
    }


# ---- REDCap longitudinal raw export -----------------------------------------------------------

REDCAP_FORMS = {
    # instrument: (form name, item fields, total field)
    "SRS": ("session_rating_scale", [f"srs_{i}" for i in range(1, 5)], "srs_total"),
    "PHQ-9": ("phq9", [f"phq9_{i}" for i in range(1, 10)], "phq9_total"),
    "GAD-7": ("gad7", [f"gad7_{i}" for i in range(1, 8)], "gad7_total"),
}
REDCAP_EVENT = r"^session_(\d+)_arm_\d+$"


def _redcap_keep(code: str) -> str:
    return f"{REDCAP_FORMS[code][0]}_complete == 2"


def _redcap(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> ToolExport:
    rng = _rng(spec)
    m = c.measures.copy()
    ids = sorted(m["client_id"].unique())
    record = {cid: str(1001 + i) for i, cid in enumerate(ids)}  # REDCap's auto-numbered ids
    m["client_id"] = m["client_id"].map(record)
    keys = ["client_id", "clinician_id", "session_date", "session_number"]
    events = m[keys].drop_duplicates().sort_values(["client_id", "session_number"])
    events = events.reset_index(drop=True)
    loaded = []
    filtered: dict[str, int] = {}
    cols: dict[str, list[str]] = {
        "record_id": events["client_id"].tolist(),
        "redcap_event_name": [f"session_{n}_arm_1" for n in events["session_number"]],
        "redcap_repeat_instrument": [""] * len(events),
        "redcap_repeat_instance": [""] * len(events),
        "clinician_code": events["clinician_id"].tolist(),
        "session_date": _date(events["session_date"], "%Y-%m-%d"),
        "session_complete": ["2"] * len(events),
    }
    for code in (spec.alliance, *spec.symptoms):
        form, fields, total = REDCAP_FORMS[code]
        block = events.merge(m[m["instrument"] == code], on=keys, how="left", validate="1:1")
        given = block["total"].notna().to_numpy()
        status = np.where(given, "2", "0")
        # forms left incomplete (0) or unverified (1), some items not entered: never loaded
        unsure = given & (rng.random(len(block)) < 0.07)
        status[unsure] = rng.choice(["0", "1"], int(unsure.sum()))
        values = block.copy()
        values.loc[unsure, ITEMS[len(fields) - 1]] = np.nan
        values.loc[unsure, "total"] = np.nan
        for j, f in enumerate(fields):
            cols[f] = _num(values[ITEMS[j]])
        cols[total] = _num(values["total"])
        cols[f"{form}_complete"] = status.tolist()
        filtered[filtered_reason(_redcap_keep(code), f"wide.blocks.{code}.keep_rows")] = int(
            unsure.sum()
        )
        loaded.append(block.loc[given & ~unsure, m.columns])
    out = pd.DataFrame(cols)
    # one enrollment event per record with no measure on it (REDCap exports every event)
    enrol = pd.DataFrame({c: [""] * len(ids) for c in out.columns})
    enrol["record_id"] = [record[cid] for cid in ids]
    enrol["redcap_event_name"] = "enrollment_arm_1"
    for code in (spec.alliance, *spec.symptoms):
        enrol[f"{REDCAP_FORMS[code][0]}_complete"] = "0"
    enrol["session_complete"] = "2"
    out = pd.concat([enrol, out], ignore_index=True).sort_values("record_id", kind="stable")
    path = d / "AllianceWatch_DATA_2025-11-20_1003.csv"
    path.write_text(_csv(out), encoding="utf-8")
    canon = pd.concat(loaded, ignore_index=True)
    canon["session_number"] = canon["session_number"].astype("int32")
    return ToolExport([path], _canonical(canon), {k: v for k, v in filtered.items() if v})


def _redcap_config(spec: ClinicSpec) -> dict[str, Any]:
    blocks = {}
    for code in (spec.alliance, *spec.symptoms):
        _form, fields, total = REDCAP_FORMS[code]
        blocks[code] = {"items": fields, "total": total, "keep_rows": [_redcap_keep(code)]}
    return {
        "layout": "wide",
        "measures_pattern": "AllianceWatch_DATA_*.csv",
        "columns": {
            "client_id": "record_id",
            "clinician_id": "clinician_code",
            "session_date": "session_date",
        },
        "session_number_from": {"column": "redcap_event_name", "pattern": REDCAP_EVENT},
        "wide": {"blocks": blocks},
    }


# ---- Qualtrics --------------------------------------------------------------------------------

QUALTRICS_META = [
    "StartDate",
    "EndDate",
    "Status",
    "Progress",
    "Duration (in seconds)",
    "Finished",
    "RecordedDate",
    "ResponseId",
    "DistributionChannel",
    "UserLanguage",
]
QUALTRICS_BLOCKS = {
    "SRS": ([f"Q1_{i}" for i in range(1, 5)], None),
    "ORS": ([f"Q2_{i}" for i in range(1, 5)], None),
}
QUALTRICS_TEXT = {
    "StartDate": "Start Date",
    "EndDate": "End Date",
    "Status": "Response Type",
    "RecordedDate": "Recorded Date",
    "ResponseId": "Response ID",
    "DistributionChannel": "Distribution Channel",
    "UserLanguage": "User Language",
    "Q1_1": "Relationship - I felt heard, understood, and respected",
    "Q1_2": "Goals and Topics - We worked on what I wanted to work on",
    "Q1_3": "Approach or Method - The therapist's approach is a good fit for me",
    "Q1_4": "Overall - Overall, today's session was right for me",
    "Q2_1": "Individually - Personal well-being",
    "Q2_2": "Interpersonally - Family, close relationships",
    "Q2_3": "Socially - Work, school, friendships",
    "Q2_4": "Overall - General sense of well-being",
    "client_code": "client_code",
    "clinician_code": "clinician_code",
}
# Both export modes: "Use numeric values" writes Status 0/1/2/8/9 and Finished 1/0, choice text
# writes "IP Address"/"Survey Preview"/... and True/False.
QUALTRICS_KEEP = [
    "Status not in (1, 2, 8, 9, Survey Preview, Survey Test, Spam, Preview Spam)",
    "Finished in (1, True)",
]


def _qualtrics(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> ToolExport:
    rng = _rng(spec)
    m = c.measures.copy()
    # no session number in a survey: it is the order of the response dates per client and
    # instrument (an instrument skipped at a session does not count that session)
    m = m.sort_values(["client_id", "instrument", "session_date"], kind="stable")
    m["session_number"] = (
        m.groupby(["client_id", "instrument"]).cumcount().astype("int32") + 1
    ).astype("int32")
    keys = ["client_id", "clinician_id", "session_date"]
    resp = m[keys].drop_duplicates().sort_values(["session_date", "client_id"], kind="stable")
    resp = resp.reset_index(drop=True)
    n = len(resp)
    seconds = rng.integers(8 * 3600, 19 * 3600, n)
    duration = rng.integers(40, 400, n)
    day = pd.to_datetime(resp["session_date"])
    recorded = day + pd.to_timedelta(seconds, unit="s")
    start = recorded - pd.to_timedelta(duration, unit="s")
    fmt = "%Y-%m-%d %H:%M:%S"
    out = pd.DataFrame(
        {
            "StartDate": start.dt.strftime(fmt),
            "EndDate": recorded.dt.strftime(fmt),
            "Status": "IP Address",
            "Progress": "100",
            "Duration (in seconds)": duration.astype(str),
            "Finished": "True",
            "RecordedDate": recorded.dt.strftime(fmt),
            "ResponseId": [f"R_{i:015X}" for i in rng.integers(0, 2**60, n)],
            "DistributionChannel": "anonymous",
            "UserLanguage": "EN",
        }
    )
    for code, (fields, _total) in QUALTRICS_BLOCKS.items():
        block = resp.merge(m[m["instrument"] == code], on=keys, how="left", validate="1:1")
        for j, f in enumerate(fields):
            out[f] = _num(block[ITEMS[j]])
    out["client_code"] = resp["client_id"].to_numpy()
    out["clinician_code"] = resp["clinician_id"].to_numpy()
    # previews (the survey's author testing it) and responses left unfinished: never loaded
    n_prev, n_unfinished = 4, 6
    preview = out.sample(n_prev, random_state=1).copy()
    preview["Status"] = "Survey Preview"
    preview["DistributionChannel"] = "preview"
    preview[["client_code", "clinician_code"]] = ""
    unfinished = out.sample(n_unfinished, random_state=2).copy()
    unfinished["Finished"] = "False"
    unfinished["Progress"] = "45"
    unfinished[[*QUALTRICS_BLOCKS["ORS"][0], "Q1_4"]] = ""
    out = pd.concat([out, preview, unfinished]).sort_values("RecordedDate", kind="stable")
    header2 = pd.DataFrame([{c: QUALTRICS_TEXT.get(c, c) for c in out.columns}])
    header3 = pd.DataFrame([{c: json.dumps({"ImportId": _import_id(c)}) for c in out.columns}])
    text = _csv(pd.concat([header2, header3, out], ignore_index=True))
    path = d / "Session Feedback_November 20, 2025_10.03.csv"
    path.write_text(text, encoding="utf-8")
    filtered = {
        filtered_reason(QUALTRICS_KEEP[0]): n_prev,
        filtered_reason(QUALTRICS_KEEP[1]): n_unfinished,
    }
    return ToolExport([path], _canonical(m), filtered)


def _import_id(column: str) -> str:
    if column.startswith("Q"):
        return "QID" + column[1:]
    return {"StartDate": "startDate", "EndDate": "endDate", "RecordedDate": "recordedDate"}.get(
        column, column[:1].lower() + column[1:].replace(" (in seconds)", "")
    )


def _qualtrics_config() -> dict[str, Any]:
    return {
        "layout": "wide",
        "header_rows": 2,
        "date_format": "%Y-%m-%d %H:%M:%S",
        "measures_pattern": "Session Feedback*.csv",
        "columns": {
            "client_id": "client_code",
            "clinician_id": "clinician_code",
            "session_date": "RecordedDate",
        },
        "keep_rows": QUALTRICS_KEEP,
        "session_number_from": {"order": "session_date"},
        "wide": {
            "blocks": {code: {"items": fields} for code, (fields, _t) in QUALTRICS_BLOCKS.items()}
        },
    }


# ---- one file per instrument ------------------------------------------------------------------

SPLIT_FILES = {
    # instrument: (file prefix, item headers, total header)
    "SRS": ("srs", ["relationship", "goals", "approach", "overall"], "total"),
    "PHQ-9": ("phq9", [f"phq9_{i}" for i in range(1, 10)], "phq9_total"),
    "GAD-7": ("gad7", [f"gad7_{i}" for i in range(1, 8)], "gad7_total"),
}
SPLIT_KEYS = {
    "client_id": "client",
    "clinician_id": "therapist",
    "session_date": "date",
    "session_number": "session",
}
SPLIT_TRAILING_BLANK_ROWS = 2


def _per_instrument(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> ToolExport:
    m = c.measures
    files: list[Path] = []
    blank = 0
    for code in (spec.alliance, *spec.symptoms):
        prefix, items, total = SPLIT_FILES[code]
        own = m[m["instrument"] == code]
        for key, part in own.groupby(_periods(own["session_date"], period), sort=True):
            out = pd.DataFrame(
                {
                    "client": part["client_id"].to_numpy(),
                    "therapist": part["clinician_id"].to_numpy(),
                    "date": _date(part["session_date"], "%Y-%m-%d"),
                    "session": part["session_number"].astype(int).astype(str).to_numpy(),
                    **{h: _num(part[ITEMS[j]]) for j, h in enumerate(items)},
                    total: _num(part["total"]),
                }
            )
            text = _csv(out)
            if code == spec.alliance:  # kept in a spreadsheet: its leftover rows
                text += ("," * (out.shape[1] - 1) + "\n") * SPLIT_TRAILING_BLANK_ROWS
                blank += SPLIT_TRAILING_BLANK_ROWS
            path = d / f"{prefix}_{key}.csv"
            path.write_text(text, encoding="utf-8")
            files.append(path)
    return ToolExport(files, _canonical(m), {BLANK_ROW: blank})


def _per_instrument_config(spec: ClinicSpec) -> dict[str, Any]:
    files = []
    for code in (spec.alliance, *spec.symptoms):
        prefix, items, total = SPLIT_FILES[code]
        files.append(
            {
                "pattern": f"{prefix}_*.csv",
                "instrument": code,
                "columns": {**{f"item_{j + 1}": h for j, h in enumerate(items)}, "total": total},
            }
        )
    return {"columns": SPLIT_KEYS, "files": files}


# ---- entry points -----------------------------------------------------------------------------

_WRITERS = {
    "excel_de": _excel_de,
    "pcoms_fit": _pcoms_fit,
    "redcap": _redcap,
    "qualtrics": _qualtrics,
    "per_instrument": _per_instrument,
}


def tool_config(spec: ClinicSpec, clinicians: list[str]) -> dict[str, Any]:
    """The clinic config for a tool-style clinic (what `config/examples/` holds)."""
    head, tail = _common(spec, clinicians)
    style = {
        "excel_de": lambda: _excel_de_config(),
        "pcoms_fit": lambda: _pcoms_fit_config(),
        "redcap": lambda: _redcap_config(spec),
        "qualtrics": lambda: _qualtrics_config(),
        "per_instrument": lambda: _per_instrument_config(spec),
    }[spec.style]()
    versions = {code: spec.version(code) for code in (spec.alliance, *spec.symptoms)}
    return {**head, **style, "instruments": versions, **tail}


def write_tool_clinic(spec: ClinicSpec, cohort: Cohort, out: Path, period: str) -> ToolExport:
    """Write the clinic's config, its landing files in the tool's conventions, and what ingest
    must make of them (`canonical/<clinic>.measures.parquet`, `canonical/<clinic>.filtered.json`)."""
    cfg_dir = out / "config" / "clinics"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    clinicians = sorted(set(cohort.measures["clinician_id"]))
    cfg = tool_config(spec, clinicians)
    (cfg_dir / f"{spec.clinic_id}.yaml").write_text(
        yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    landing = out / "landing" / spec.clinic_id
    landing.mkdir(parents=True, exist_ok=True)
    export = _WRITERS[spec.style](spec, cohort, landing, period)
    canon = out / "canonical"
    canon.mkdir(parents=True, exist_ok=True)
    frame = export.canonical.copy()
    frame["session_date"] = pd.to_datetime(frame["session_date"]).dt.date
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        canon / f"{spec.clinic_id}.measures.parquet",
    )
    (canon / f"{spec.clinic_id}.filtered.json").write_text(
        json.dumps(export.filtered, indent=1, sort_keys=True), encoding="utf-8"
    )
    return export
