"""Outside-style exports (`benchmarks/outside_exports.py`) through the real ingest (reader, guard,
GX, DuckDB under tmp_path): the ones the reader or the guard refused, or loaded nothing from,
before they were fixed, and what they loaded checked value by value where the export says what
must load. The benchmark runs all 36 through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.outside_exports import (
    Export,
    _entries,
    _wrong_values,
    generic_exports,
    qualtrics_exports,
    redcap_exports,
    split_exports,
)

NAMES = (
    "Qualtrics CSV, numeric values, 3 header rows, default metadata",
    "Qualtrics CSV, choice text, 3 header rows, question text with a line break",
    "config/examples/qualtrics_clinic.yaml as it stands",
    "REDCap repeating instrument, clinician on the record's base row",
    "REDCap labels export",
    "PHQ-9 answers as labels",
    "PHQ-9 with Qualtrics' default recodes 1-4",
    "dates as Excel serial numbers",
    "SPSS CSV (FORMAT=VARIABLE)",
    "pandas to_csv: session numbers as floats",
    "REDCap two repeating instruments (SRS, PHQ-9), each with its own date field",
    "Excel workbook delivered as .xlsx",
    "Excel 97-2003 workbook delivered as .xls",
)


def _export(prefix: str) -> Export:
    es = _entries()
    every = (*redcap_exports(es), *qualtrics_exports(es), *generic_exports(es), *split_exports(es))
    found = [e for e in every if prefix in e.name]
    assert len(found) == 1, prefix
    return found[0]


@pytest.mark.parametrize("name", NAMES)
def test_an_outside_export_loads_or_is_refused_with_its_reason(name: str, tmp_path: Path) -> None:
    from pipelines.ingest.run import ingest_all

    export = _export(name)
    clinics = tmp_path / "config" / "clinics"
    landing = tmp_path / "landing" / "outside"
    clinics.mkdir(parents=True)
    landing.mkdir(parents=True)
    cfg = {**export.config, "clinic_id": "outside"}
    (clinics / "outside.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
    for file_name, data in export.files.items():
        (landing / file_name).write_bytes(data)
    results = ingest_all(tmp_path / "config", tmp_path / "landing", tmp_path / "wh.duckdb")
    assert sum(r.rows_loaded for r in results) == export.expected_loaded, [
        (r.status, r.error, r.top_reasons, r.filtered_reasons) for r in results
    ]
    if export.expect_reason:
        assert any(export.expect_reason in (r.error or "") for r in results)
    else:
        assert all(r.rows_quarantined == 0 for r in results)
    if export.expected_values is not None:
        assert _wrong_values(export, tmp_path / "wh.duckdb") == 0
