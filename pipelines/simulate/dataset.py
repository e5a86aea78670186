"""A whole synthetic dataset on disk: every clinic's export in its own style (the reference format,
the sample tools' formats), its config and the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipelines.simulate.cohort import (
    TRUTH_COLUMNS,
    ClinicSpec,
    Cohort,
    appointments_table,
    measures_table,
)
from pipelines.simulate.exporters import ExportSummary, write_clinic


def write_dataset(
    out: Path, specs: list[ClinicSpec], cohorts: dict[str, Cohort], period: str = "month"
) -> ExportSummary:
    """Every clinic's config and files, `out/truth.csv` and `out/canonical/*.parquet`."""
    from pipelines.simulate.tool_exports import TOOL_STYLES, write_tool_clinic

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for spec in specs:
        if spec.style in TOOL_STYLES:
            # the tools' exports: canonical/<clinic>.measures.parquet and .filtered.json
            files += write_tool_clinic(spec, cohorts[spec.clinic_id], out, period).files
        else:
            files += write_clinic(spec, cohorts[spec.clinic_id], out, period)
    truth = pd.concat([c.truth for c in cohorts.values()], ignore_index=True)
    truth.reindex(columns=list(TRUTH_COLUMNS)).to_csv(out / "truth.csv", index=False)
    canon = out / "canonical"
    canon.mkdir(exist_ok=True)
    own = {s.clinic_id: cohorts[s.clinic_id] for s in specs if s.style not in TOOL_STYLES}
    pq.write_table(measures_table(own), canon / "measures.parquet")
    pq.write_table(appointments_table(own), canon / "appointments.parquet")
    return ExportSummary(n_files=len(files), files=files)
