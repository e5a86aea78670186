"""End to end through a real Airflow: generate the sample clinics, run ingest -> detect ->
digest DAGs with dag.test() on a throwaway SQLite Airflow home (exactly what `make demo` does),
then check what each user would look at."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ALLIANCE_WATCH"))}
    out = subprocess.run(
        [sys.executable, str(ROOT / "dags" / "tools" / "run_demo.py"), "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, (out.stdout[-4000:], out.stderr[-4000:])
    (home / "demo_stdout.txt").write_text(out.stdout)
    return home


def test_demo_prints_the_summary(demo_home: Path) -> None:
    text = (demo_home / "demo_stdout.txt").read_text()
    for needle in ("rows loaded", "clients flagged", "warehouse:", "digests:", "GX Data Docs:"):
        assert needle in text
    # the site the summary points to exists (rendered by `publish_data_docs`)
    site = next(line for line in text.splitlines() if "GX Data Docs:" in line).split()[-1]
    assert Path(site).is_file(), site


def test_warehouse_has_three_sample_clinics_and_flags(demo_home: Path) -> None:
    con = duckdb.connect(str(demo_home / "warehouse" / "alliance.duckdb"), read_only=True)
    clinics = con.execute("select count(distinct clinic_id) from measurements").fetchall()[0][0]
    flags = con.execute("select count(*) from flags").fetchall()[0][0]
    bad = con.execute(
        "select count(*) from ingest_files "
        "where rows_in <> rows_loaded + rows_quarantined + rows_duplicate"
    ).fetchall()[0][0]
    con.close()
    assert clinics >= 3
    assert flags >= 1
    assert bad == 0


def test_snapshot_published_and_digests_written(demo_home: Path) -> None:
    snap = demo_home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"
    con = duckdb.connect(str(snap), read_only=True)
    assert con.execute("select count(*) from flags").fetchall()[0][0] >= 1
    con.close()
    assert list((demo_home / "outbox").rglob("*.html"))
