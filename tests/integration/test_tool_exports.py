"""Issue #17: the exports clinics actually have, written by the simulator in each tool's
conventions, load with the configs of `config/examples/` (real GX, real DuckDB, under tmp_path):
every valid row loads and equals the canonical rows; the rows that are not measures (collateral
raters, previews, unfinished responses, incomplete REDCap forms, blank spreadsheet rows) never
load and are counted with their reason."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.cli import generate as generate_cli
from pipelines.config import load_clinic_config
from pipelines.simulate.tool_exports import TOOL_CLINICS, tool_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "examples"
KEY = ["clinic_id", "client_id", "episode_id", "session_number", "instrument"]
COLUMNS = [
    *KEY,
    "clinician_id",
    "session_date",
    *[f"item_{i}" for i in range(1, 13)],
    "total",
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tools")
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(out), "--seed", "17", "--clients", "24", "--as-of", "2025-11-20"]
        + ["--start-date", "2025-06-01", "--period", "quarter", "--tool-exports"]
        + ["--clinics", "1"]
    )
    assert generate_cli.run(args) == 0
    return out


def _ingest_with_example(generated: Path, clinic_id: str, tmp_path: Path) -> Path:
    """Ingest one tool clinic's landing files with its config from config/examples/."""
    from pipelines.ingest import run as ingest

    clinics = tmp_path / "config" / "clinics"
    clinics.mkdir(parents=True)
    shutil.copy(EXAMPLES / f"{clinic_id}.yaml", clinics / f"{clinic_id}.yaml")
    landing = tmp_path / "landing"
    shutil.copytree(generated / "landing" / clinic_id, landing / clinic_id)
    warehouse = tmp_path / "wh.duckdb"
    ingest.ingest_all(tmp_path / "config", landing, warehouse)
    return warehouse


def _counted(reasons: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for text in reasons:
        reason, n = text.rsplit(" (", 1)
        out[reason] = out.get(reason, 0) + int(n.rstrip(")"))
    return out


@pytest.mark.parametrize(
    "clinic_id",
    [s.clinic_id for s in TOOL_CLINICS],
    ids=[s.style for s in TOOL_CLINICS],
)
def test_tool_export_loads_every_valid_row_and_counts_the_rest(
    generated: Path, clinic_id: str, tmp_path: Path
) -> None:
    warehouse = _ingest_with_example(generated, clinic_id, tmp_path)
    want = pq.read_table(generated / "canonical" / f"{clinic_id}.measures.parquet").to_pandas()
    filtered = json.loads((generated / "canonical" / f"{clinic_id}.filtered.json").read_text())
    cols = ", ".join(COLUMNS)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        got = conn.execute(f"select {cols} from measurements").df()  # noqa: S608 - fixed names
        files = conn.execute(
            "select status, rows_in, rows_loaded, rows_quarantined, rows_duplicate, "
            "rows_filtered, filtered_reasons, error from ingest_files"
        ).df()
        quarantined = conn.execute("select count(*) from quarantined_rows").fetchone()
    assert set(files["status"]) == {"loaded"}, files["error"].tolist()
    assert quarantined == (0,)
    assert files["rows_in"].sum() == len(want) == files["rows_loaded"].sum()
    assert (files["rows_in"] == files["rows_loaded"] + files["rows_quarantined"]).all()
    # the rows that are not measures: never loaded, counted by reason
    assert files["rows_filtered"].sum() == sum(filtered.values()) > 0
    reasons: dict[str, int] = {}
    for listed in files["filtered_reasons"]:
        for reason, n in _counted(list(listed)).items():
            reasons[reason] = reasons.get(reason, 0) + n
    assert reasons == filtered
    # round trip: what loaded is exactly the canonical rows
    got = got.sort_values(KEY, ignore_index=True)
    want = want[COLUMNS].sort_values(KEY, ignore_index=True)
    got["session_date"] = pd.to_datetime(got["session_date"]).dt.date
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


def test_the_examples_are_the_configs_the_simulator_writes() -> None:
    """config/examples/ stays what the tool exports need (the test above loads with them)."""
    for spec in TOOL_CLINICS:
        path = EXAMPLES / f"{spec.clinic_id}.yaml"
        example = yaml.safe_load(path.read_text(encoding="utf-8"))
        load_clinic_config(path)  # valid as it stands
        assert example == tool_config(spec, list(example["clinicians"])), path.name


def test_pcoms_second_episode_is_a_new_series_and_paper_totals_load(generated: Path) -> None:
    want = pq.read_table(generated / "canonical" / "fit_clinic.measures.parquet").to_pandas()
    second = want[want["episode_id"] == "2"]
    assert len(second) and (second["session_number"] == 1).any()
    both = set(second["client_id"]) & set(want.loc[want["episode_id"] == "1", "client_id"])
    assert both  # the same client, session numbers restarting: both episodes are kept
    total_only = want[want["item_1"].isna()]
    assert len(total_only) and total_only["total"].notna().all()


def test_the_receipt_and_the_weekly_view_say_which_rows_were_filtered_and_why(
    generated: Path, tmp_path: Path
) -> None:
    from pipelines.deliver.notify import receipt_message
    from pipelines.warehouse import create_views, open_warehouse

    warehouse = _ingest_with_example(generated, "qualtrics_clinic", tmp_path)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        files = conn.execute("select * from ingest_files").df().to_dict("records")
    for f in files:
        f["filtered_reasons"] = list(f["filtered_reasons"])
        f["top_reasons"] = list(f["top_reasons"] if f["top_reasons"] is not None else [])
    text = receipt_message("qualtrics_clinic", "run", files, "aw@example.org", ["d@x.org"])
    body = text.get_content()
    assert "10 filtered (not measures, by the config)" in body
    assert (
        "filtered: keep_rows 'Status not in (1, 2, 8, 9, Survey Preview, Survey Test, Spam, "
        "Preview Spam)' not met (4)" in body
    )
    with open_warehouse(warehouse) as conn:
        create_views(conn)
        (n,) = conn.execute("select sum(rows_filtered) from clinic_data_quality_weekly").fetchone()
    assert n == 10
