"""Round trip: generate -> read (and ingest) -> the canonical rows equal the simulator's."""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import generate as generate_cli
from pipelines.config import load_clinic_configs
from pipelines.ingest.read import canonicalize, read_raw

MEASURE_KEY = ["clinic_id", "client_id", "session_number", "instrument"]
APPT_KEY = ["clinic_id", "client_id", "appointment_date"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    parser = argparse.ArgumentParser()
    generate_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(out), "--seed", "42", "--clients", "25", "--as-of", "2025-11-20"]
        + ["--start-date", "2025-07-01", "--period", "quarter"]
    )
    assert generate_cli.run(args) == 0
    return out


def _sorted(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return df.sort_values(key, kind="stable").reset_index(drop=True)


def test_every_sample_clinic_reads_back_exactly(generated: Path) -> None:
    configs, errors = load_clinic_configs(generated / "config")
    assert errors == []
    assert set(configs) == {"pcoms_north", "wai_central", "euro_praxis", "ref_clinic"}
    tables: dict[str, list[pa.Table]] = {"measures": [], "appointments": []}
    for cid, cfg in configs.items():
        for f in sorted((generated / "landing" / cid).iterdir()):
            dataset = "measures" if fnmatch.fnmatch(f.name, cfg.measures_pattern) else None
            if fnmatch.fnmatch(f.name, cfg.appointments_pattern):
                dataset = "appointments"
            assert dataset is not None, f.name
            raw = read_raw(f, dataset, cfg)
            assert raw.ignored_columns == []
            typed, issues = canonicalize(raw, cfg)
            assert issues.empty, (f.name, issues["reason"].unique())
            tables[dataset].append(typed.drop_columns(["source_file", "source_line"]))
    for dataset, key in (("measures", MEASURE_KEY), ("appointments", APPT_KEY)):
        got = _sorted(pa.concat_tables(tables[dataset]).to_pandas(), key)
        want = _sorted(
            pq.read_table(generated / "canonical" / f"{dataset}.parquet").to_pandas(), key
        )
        pd.testing.assert_frame_equal(got[list(want.columns)], want, check_exact=True)


def test_ingest_loads_exactly_the_simulated_rows(generated: Path, tmp_path: Path) -> None:
    from pipelines.ingest import run as ingest

    warehouse = tmp_path / "wh.duckdb"
    results = ingest.ingest_all(generated / "config", generated / "landing", warehouse)
    assert results
    want = _sorted(
        pq.read_table(generated / "canonical" / "measures.parquet").to_pandas(), MEASURE_KEY
    )
    cols = ", ".join(want.columns)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        got = conn.execute(f"select {cols} from measurements").df()  # noqa: S608 - fixed names
        rejected = conn.execute(
            "select count(*) from ingest_files where status not in ('loaded')"
        ).fetchone()
    assert rejected == (0,)
    got = _sorted(got, MEASURE_KEY)
    got["session_date"] = pd.to_datetime(got["session_date"]).dt.date
    got["session_number"] = got["session_number"].astype("int32")
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
