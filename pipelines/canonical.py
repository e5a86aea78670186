"""The canonical record shapes every reader produces and every later stage consumes.

A reader maps a clinic's own export (any layout, delimiter, encoding, date format) onto these
Arrow schemas. Nothing downstream of a reader knows a clinic's format.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.registry import (  # noqa: F401  (re-exported: the reference format)
    ITEM_COLUMNS,
    REFERENCE_APPOINTMENT_COLUMNS,
    REFERENCE_MEASURE_COLUMNS,
)

MEASURE_KEY: tuple[str, ...] = (
    "clinic_id",
    "client_id",
    "episode_id",
    "session_number",
    "instrument",
)

MEASURES_SCHEMA = pa.schema(
    [
        pa.field("clinic_id", pa.string(), nullable=False),
        pa.field("client_id", pa.string()),
        # the treatment episode ("" when the export has none): part of the key, so a client's
        # second episode is a new series, not a correction of the first
        pa.field("episode_id", pa.string()),
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

# The simulator's ground truth (`truth.csv`, docs/architecture.md): written by
# pipelines.simulate.cohort, read by pipelines.detect.evaluate.
TRUTH_COLUMNS: tuple[str, ...] = (
    "kind",
    "clinic_id",
    "client_id",
    "instrument",
    "onset_session",
    "part",
    "repaired_session",
    "dropout_session",
    "last_session",
)
