"""Shared fixtures: real things in tmp_path (DuckDB files, Airflow homes), never mocks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def reference_config_dir(tmp_path: Path) -> Path:
    """A config folder holding one clinic in the reference format with the 3-key config."""
    d = tmp_path / "config" / "clinics"
    d.mkdir(parents=True)
    (d / "ref_clinic.yaml").write_text(
        "clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n", encoding="utf-8"
    )
    return tmp_path / "config"


REFERENCE_HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)


def reference_row(
    client: str,
    clinician: str,
    date: str,
    session: int,
    instrument: str,
    items: list[float | int | str],
    total: float | int | str = "",
) -> str:
    cells = [str(x) for x in items] + [""] * (12 - len(items))
    return ",".join([client, clinician, date, str(session), instrument, *cells, str(total)])


@pytest.fixture
def write_reference(tmp_path: Path):  # type: ignore[no-untyped-def]
    """write_reference(name, rows) -> path in landing/ref_clinic/."""
    landing = tmp_path / "landing" / "ref_clinic"
    landing.mkdir(parents=True, exist_ok=True)

    def _write(name: str, rows: list[str], header: str = REFERENCE_HEADER) -> Path:
        p = landing / name
        p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        return p

    return _write


def build_detected_warehouse(root: Path, seed: int, clinics: int) -> Path:
    """`alliance-watch generate` (40 clients a clinic, every session up to 2026-06-01) into
    `root`, ingested into `root/wh.duckdb` and detected: a realistic warehouse for tests."""
    import sys

    from pipelines.detect import detect
    from pipelines.ingest import ingest_all
    from pipelines.warehouse import open_warehouse

    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "generate", "--out", str(root), "--seed", str(seed)]
        + ["--clinics", str(clinics), "--clients", "40", "--period", "all"]
        + ["--as-of", "2026-06-01"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wh = root / "wh.duckdb"
    ingest_all(root / "config", root / "landing", wh)
    with open_warehouse(wh) as conn:
        detect(conn)
    return wh


# Headless Chromium as this machine kind allows it (Debian's package; no background network).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def reachable(port: int) -> bool:
    """Whether a service answers on 127.0.0.1:`port` (the production-profile tests need
    PostgreSQL and Redis there)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
