"""Write a simulated clinic's canonical rows in that clinic's own export format, with its config.

Four styles, one per sample clinic (docs/clinic-onboarding.md shows their configs):

* ``reference``: the CONTRACT format (UTF-8 CSV, ISO dates, long layout), the 3-key config.
* ``pcoms_wide``: one CSV line per session with SRS and ORS blocks, US dates, "Client ID" headers.
* ``parquet_long``: Parquet, one row per measure, the clinic's own column and instrument names.
* ``euro_csv``: semicolon, decimal comma, latin-1, DD.MM.YYYY, German headers.

The exports of the tools clinics use (Excel, PCOMS/FIT, REDCap, Qualtrics, one file per
instrument) are written by `pipelines.simulate.tool_exports` (`write_dataset` dispatches to it).

Values are formatted vectorized (pyarrow casts give the shortest text that parses back to the
same double), so a reader that follows the config reproduces the canonical rows exactly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from pipelines import registry
from pipelines.simulate.cohort import (
    ClinicSpec,
    Cohort,
)

STYLES: tuple[str, ...] = ("reference", "pcoms_wide", "parquet_long", "euro_csv")


# The clinic's header for each canonical column, per style (reference uses canonical names).
PCOMS_COLUMNS = {
    "client_id": "Client ID",
    "clinician_id": "Clinician",
    "session_date": "Session Date",
    "session_number": "Session #",
}


PCOMS_BLOCKS = {
    "SRS": (
        ["SRS Relationship", "SRS Goals and Topics", "SRS Approach or Method", "SRS Overall"],
        "SRS Total",
    ),
    "ORS": (
        ["ORS Individually", "ORS Interpersonally", "ORS Socially", "ORS Overall"],
        "ORS Total",
    ),
}


PCOMS_APPT_COLUMNS = {
    "client_id": "Client ID",
    "clinician_id": "Clinician",
    "appointment_date": "Appt Date",
    "status": "Status",
}


PCOMS_STATUS = {
    "Show": "attended",
    "Cancelled": "cancelled",
    "No Show": "no_show",
    "Clinic Cancelled": "cancelled_by_clinic",
}


PARQUET_COLUMNS = {
    "client_id": "client_code",
    "clinician_id": "therapist_code",
    "session_date": "session_date",
    "session_number": "session_no",
    "instrument": "measure",
    **{f"item_{i}": f"q{i}" for i in range(1, 13)},
    "total": "score",
}


PARQUET_INSTRUMENTS = {"WAISR": "WAI-SR", "PHQ9": "PHQ-9", "GAD7": "GAD-7"}


PARQUET_APPT_COLUMNS = {
    "client_id": "client_code",
    "clinician_id": "therapist_code",
    "appointment_date": "visit_date",
    "status": "visit_status",
}


PARQUET_STATUS = {
    "attended": "attended",
    "cancelled": "cancelled",
    "no-show": "no_show",
    "clinic-cancelled": "cancelled_by_clinic",
}


EURO_COLUMNS = {
    "client_id": "Klienten-Kürzel",
    "clinician_id": "Behandler-Kürzel",
    "session_date": "Datum",
    "session_number": "Sitzung",
    "instrument": "Bogen",
    **{f"item_{i}": f"Item {i}" for i in range(1, 5)},
    "total": "Summe",
}


EURO_APPT_COLUMNS = {
    "client_id": "Klienten-Kürzel",
    "clinician_id": "Behandler-Kürzel",
    "appointment_date": "Termin",
    "status": "Status",
}


EURO_STATUS = {
    "erschienen": "attended",
    "abgesagt": "cancelled",
    "nicht erschienen": "no_show",
    "Absage Praxis": "cancelled_by_clinic",
}


@dataclass
class ExportSummary:
    n_files: int
    files: list[Path]


def clinician_directory(spec: ClinicSpec, codes: list[str]) -> dict[str, str]:
    """Pseudonymous clinician code -> a reserved-TLD address (never a real mailbox)."""
    domain = spec.clinic_id.replace("_", "-") + ".invalid"
    return {code: f"{code.lower()}@{domain}" for code in sorted(codes)}


def clinic_config(spec: ClinicSpec, clinicians: list[str]) -> dict[str, Any]:
    """The YAML config a data team would write for this clinic's export."""
    if spec.style == "reference":
        return {"clinic_id": spec.clinic_id, "timezone": spec.timezone, "format": "reference"}
    domain = spec.clinic_id.replace("_", "-") + ".invalid"
    common: dict[str, Any] = {
        "clinic_id": spec.clinic_id,
        "timezone": spec.timezone,
        "format": "custom",
    }
    tail: dict[str, Any] = {
        "instruments": {code: spec.version(code) for code in (spec.alliance, *spec.symptoms)},
        "limited_data_set": {"agreement_id": f"DUA-SIM-{spec.clinic_id.upper()}", "signed": True},
        "clinicians": clinician_directory(spec, clinicians),
        "notifications": {"data_team_email": f"data-team@{domain}"},
    }
    if spec.style == "pcoms_wide":
        style: dict[str, Any] = {
            "layout": "wide",
            "date_format": "%m/%d/%Y",
            "measures_pattern": "pcoms_sessions_*.csv",
            "appointments_pattern": "pcoms_appointments_*.csv",
            "columns": PCOMS_COLUMNS,
            "wide": {
                "blocks": {
                    code: {"items": items, "total": total}
                    for code, (items, total) in PCOMS_BLOCKS.items()
                    if code in (spec.alliance, *spec.symptoms)
                }
            },
            "appointment_columns": PCOMS_APPT_COLUMNS,
            "status_values": PCOMS_STATUS,
        }
    elif spec.style == "parquet_long":
        style = {
            "file_type": "parquet",
            "measures_pattern": "wai_measures_*.parquet",
            "appointments_pattern": "wai_visits_*.parquet",
            "columns": PARQUET_COLUMNS,
            "instrument_values": PARQUET_INSTRUMENTS,
            "appointment_columns": PARQUET_APPT_COLUMNS,
            "status_values": PARQUET_STATUS,
        }
    elif spec.style == "euro_csv":
        style = {
            "delimiter": ";",
            "decimal": ",",
            "encoding": "latin-1",
            "date_format": "%d.%m.%Y",
            "measures_pattern": "Messwerte_*.csv",
            "appointments_pattern": "Termine_*.csv",
            "columns": EURO_COLUMNS,
            "appointment_columns": EURO_APPT_COLUMNS,
            "status_values": EURO_STATUS,
        }
    else:
        raise ValueError(f"unknown export style {spec.style!r}; use one of {', '.join(STYLES)}")
    return {**common, **style, **tail}


def _text(col: pd.Series, decimal: str = ".") -> pa.Array:
    """Numbers as the shortest text that parses back to the same double; NaN -> blank."""
    arr = pc.cast(pa.array(col, pa.float64(), from_pandas=True), pa.string())
    if decimal == ",":
        arr = pc.replace_substring(arr, ".", ",")
    return arr


def _dates(col: pd.Series, fmt: str) -> pa.Array:
    ts = pc.cast(pa.array(col, pa.date32()), pa.timestamp("s"))
    return pc.strftime(ts, format=fmt)


def _period_keys(dates: pd.Series, period: str) -> np.ndarray:
    if period == "all":
        return np.full(len(dates), "all", dtype=object)
    p = pd.to_datetime(dates).dt.to_period("M" if period == "month" else "Q")
    return p.astype(str).to_numpy()


def _write_csv(table: pa.Table, path: Path, delimiter: str, encoding: str, quote: bool) -> None:
    buf = io.BytesIO()
    pacsv.write_csv(
        table,
        buf,
        pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed" if quote else "none"),
    )
    data = buf.getvalue()
    if encoding != "utf-8":
        data = data.decode("utf-8").encode(encoding)
    path.write_bytes(data)


def _long_measures(m: pd.DataFrame, names: dict[str, str], date_fmt: str, decimal: str) -> pa.Table:
    cols: dict[str, pa.Array] = {
        names.get("client_id", "client_id"): pa.array(m["client_id"], pa.string()),
        names.get("clinician_id", "clinician_id"): pa.array(m["clinician_id"], pa.string()),
        names.get("session_date", "session_date"): _dates(m["session_date"], date_fmt),
        names.get("session_number", "session_number"): pc.cast(
            pa.array(m["session_number"], pa.int32()), pa.string()
        ),
        names.get("instrument", "instrument"): pa.array(m["instrument"], pa.string()),
    }
    for c in [*registry.ITEM_COLUMNS, "total"]:
        if c in names or not names:
            cols[names.get(c, c)] = _text(m[c], decimal)
    return pa.table(cols)


def _blank_computable_totals(m: pd.DataFrame, code: str) -> pd.DataFrame:
    """Leave `code`'s totals blank: the reader computes them from the complete items."""
    m = m.copy()
    m.loc[m["instrument"] == code, "total"] = np.nan
    return m


def _write_reference(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> list[Path]:
    files: list[Path] = []
    m = _blank_computable_totals(c.measures, spec.symptoms[0])
    for key, part in m.groupby(_period_keys(m["session_date"], period), sort=True):
        path = d / f"measures_{key}.csv"
        _write_csv(_long_measures(part, {}, "%Y-%m-%d", "."), path, ",", "utf-8", quote=False)
        files.append(path)
    a = c.appointments
    for key, part in a.groupby(_period_keys(a["appointment_date"], period), sort=True):
        path = d / f"appointments_{key}.csv"
        t = pa.table(
            {
                "client_id": pa.array(part["client_id"], pa.string()),
                "clinician_id": pa.array(part["clinician_id"], pa.string()),
                "appointment_date": _dates(part["appointment_date"], "%Y-%m-%d"),
                "status": pa.array(part["status"], pa.string()),
            }
        )
        _write_csv(t, path, ",", "utf-8", quote=False)
        files.append(path)
    return files


def _appointments(
    part: pd.DataFrame, names: dict[str, str], status: dict[str, str], date_fmt: str
) -> pa.Table:
    inverse = {v: k for k, v in status.items()}
    return pa.table(
        {
            names["client_id"]: pa.array(part["client_id"], pa.string()),
            names["clinician_id"]: pa.array(part["clinician_id"], pa.string()),
            names["appointment_date"]: _dates(part["appointment_date"], date_fmt),
            names["status"]: pa.array(part["status"].map(inverse), pa.string()),
        }
    )


def _wide_lines(spec: ClinicSpec, m: pd.DataFrame) -> pa.Table:
    """One line per (client, session): the keys, then each instrument's item block and total."""
    keys = ["client_id", "clinician_id", "session_date", "session_number"]
    lines = m[keys].drop_duplicates().sort_values(["session_date", "client_id"], kind="stable")
    cols: dict[str, pa.Array] = {
        PCOMS_COLUMNS["client_id"]: pa.array(lines["client_id"], pa.string()),
        PCOMS_COLUMNS["clinician_id"]: pa.array(lines["clinician_id"], pa.string()),
        PCOMS_COLUMNS["session_date"]: _dates(lines["session_date"], "%m/%d/%Y"),
        PCOMS_COLUMNS["session_number"]: pc.cast(
            pa.array(lines["session_number"], pa.int32()), pa.string()
        ),
    }
    for code in (spec.alliance, *spec.symptoms):
        items, total = PCOMS_BLOCKS[code]
        own = m[m["instrument"] == code]
        block = lines[keys].merge(own, on=keys, how="left", validate="one_to_one")
        for j, header in enumerate(items):
            cols[header] = _text(block[f"item_{j + 1}"])
        cols[total] = _text(block["total"])
    return pa.table(cols)


def _write_pcoms(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> list[Path]:
    files: list[Path] = []
    m = c.measures
    for key, part in m.groupby(_period_keys(m["session_date"], period), sort=True):
        path = d / f"pcoms_sessions_{key}.csv"
        _write_csv(_wide_lines(spec, part), path, ",", "utf-8", quote=True)
        files.append(path)
    a = c.appointments
    for key, part in a.groupby(_period_keys(a["appointment_date"], period), sort=True):
        path = d / f"pcoms_appointments_{key}.csv"
        t = _appointments(part, PCOMS_APPT_COLUMNS, PCOMS_STATUS, "%m/%d/%Y")
        _write_csv(t, path, ",", "utf-8", quote=True)
        files.append(path)
    return files


def _write_parquet(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> list[Path]:
    files: list[Path] = []
    inverse = {v: k for k, v in PARQUET_INSTRUMENTS.items()}
    m = c.measures
    n_items = max(registry.get(code).n_items for code in (spec.alliance, *spec.symptoms))
    for key, part in m.groupby(_period_keys(m["session_date"], period), sort=True):
        path = d / f"wai_measures_{str(key).replace('-', '_')}.parquet"
        cols: dict[str, pa.Array] = {
            "client_code": pa.array(part["client_id"], pa.string()),
            "therapist_code": pa.array(part["clinician_id"], pa.string()),
            "session_date": pa.array(part["session_date"], pa.date32()),
            "session_no": pa.array(part["session_number"], pa.int32()),
            "measure": pa.array(part["instrument"].map(inverse), pa.string()),
        }
        for i in range(1, n_items + 1):
            # integer items, stored as nullable int8 the way survey tools export them
            cols[f"q{i}"] = pc.cast(
                pa.array(part[f"item_{i}"], pa.float64(), from_pandas=True), pa.int8()
            )
        cols["score"] = pa.array(part["total"], pa.float64())
        pq.write_table(pa.table(cols), path)
        files.append(path)
    a = c.appointments
    for key, part in a.groupby(_period_keys(a["appointment_date"], period), sort=True):
        path = d / f"wai_visits_{str(key).replace('-', '_')}.parquet"
        inv = {v: k for k, v in PARQUET_STATUS.items()}
        t = pa.table(
            {
                "client_code": pa.array(part["client_id"], pa.string()),
                "therapist_code": pa.array(part["clinician_id"], pa.string()),
                "visit_date": pa.array(part["appointment_date"], pa.date32()),
                "visit_status": pa.array(part["status"].map(inv), pa.string()),
            }
        )
        pq.write_table(t, path)
        files.append(path)
    return files


def _write_euro(spec: ClinicSpec, c: Cohort, d: Path, period: str) -> list[Path]:
    files: list[Path] = []
    m = _blank_computable_totals(c.measures, spec.symptoms[0])
    for key, part in m.groupby(_period_keys(m["session_date"], period), sort=True):
        path = d / f"Messwerte_{key}.csv"
        t = _long_measures(part, EURO_COLUMNS, "%d.%m.%Y", ",")
        _write_csv(t, path, ";", "latin-1", quote=False)
        files.append(path)
    a = c.appointments
    for key, part in a.groupby(_period_keys(a["appointment_date"], period), sort=True):
        path = d / f"Termine_{key}.csv"
        t = _appointments(part, EURO_APPT_COLUMNS, EURO_STATUS, "%d.%m.%Y")
        _write_csv(t, path, ";", "latin-1", quote=False)
        files.append(path)
    return files


WRITERS = {
    "reference": _write_reference,
    "pcoms_wide": _write_pcoms,
    "parquet_long": _write_parquet,
    "euro_csv": _write_euro,
}


def write_clinic(spec: ClinicSpec, cohort: Cohort, out: Path, period: str = "month") -> list[Path]:
    """Write `out/config/clinics/<id>.yaml` and `out/landing/<id>/...`; return the files."""
    cfg_dir = out / "config" / "clinics"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    clinicians = sorted(
        set(cohort.measures["clinician_id"]) | set(cohort.appointments["clinician_id"])
    )
    cfg = clinic_config(spec, clinicians)
    (cfg_dir / f"{spec.clinic_id}.yaml").write_text(
        yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    landing = out / "landing" / spec.clinic_id
    landing.mkdir(parents=True, exist_ok=True)
    return WRITERS[spec.style](spec, cohort, landing, period)
