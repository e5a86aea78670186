"""The canonical record shapes every reader produces and every later stage consumes.

A reader maps a clinic's own export (any layout, delimiter, encoding, date format) onto these
Arrow schemas. Nothing downstream of a reader knows a clinic's format.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.registry import ITEM_COLUMNS

MEASURE_KEY: tuple[str, ...] = ("clinic_id", "client_id", "session_number", "instrument")

MEASURES_SCHEMA = pa.schema(
    [
        pa.field("clinic_id", pa.string(), nullable=False),
        pa.field("client_id", pa.string()),
        pa.field("clinician_id", pa.string()),
        pa.field("session_date", pa.date32()),
        pa.field("session_number", pa.int32()),
        pa.field("instrument", pa.string()),
        pa.field("instrument_version", pa.string()),
        *[pa.field(c, pa.float64()) for c in ITEM_COLUMNS],
        pa.field("total", pa.float64()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_line", pa.int64(), nullable=False),
    ]
)

APPOINTMENTS_SCHEMA = pa.schema(
    [
        pa.field("clinic_id", pa.string(), nullable=False),
        pa.field("client_id", pa.string()),
        pa.field("clinician_id", pa.string()),
        pa.field("appointment_date", pa.date32()),
        pa.field("status", pa.string()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_line", pa.int64(), nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"measures": MEASURES_SCHEMA, "appointments": APPOINTMENTS_SCHEMA}

# The columns of the reference export format (ARCHITECTURE.md, CONTRACT).
REFERENCE_MEASURE_COLUMNS: tuple[str, ...] = (
    "client_id",
    "clinician_id",
    "session_date",
    "session_number",
    "instrument",
    *ITEM_COLUMNS,
    "total",
)
REFERENCE_APPOINTMENT_COLUMNS: tuple[str, ...] = (
    "client_id",
    "clinician_id",
    "appointment_date",
    "status",
)
