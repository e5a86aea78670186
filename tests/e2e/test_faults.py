"""Faults during a run (issue #20 item 5), each on real parts: nothing lost, nothing doubled, and
the owner told in words they can act on.

* The disk full while staging: the stage folder on a 2 MB tmpfs (`mount -t tmpfs`, needs root;
  skipped otherwise) filled almost to the brim.

The scheduler killed mid-run is `tests/e2e/test_e2e_faults.py`; SMTP down during the digest is
`tests/integration/test_digest_scale.py`; the DuckLake catalog's Postgres restarted during a load is
`tests/e2e/test_ducklake_faults.py`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.deliver.notify import receipt_message
from pipelines.ingest.batches import plan
from pipelines.ingest.run import discover_from_snapshot, load_batches, prepare_items
from tests.e2e.stack import generate
from tests.e2e.test_exactly_once import contents

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    where = tmp_path / "small-disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` until `leave` bytes are free; the filler file is returned."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def test_the_disk_full_while_staging_holds_files_back_in_words_and_the_rerun_loads_once(
    tmp_path: Path, small_disk: Path
) -> None:
    gen = tmp_path / "gen"
    (clinic,) = generate(gen, seed=8, clinics=1, clients=60, period="month")
    cfg, landing = gen / "config", gen / "landing"
    wh, snap = tmp_path / "wh.duckdb", tmp_path / "snap" / "snapshot.duckdb"
    # what the files make on a disk with room
    from pipelines.ingest.run import ingest_all

    ingest_all(cfg, landing, tmp_path / "roomy.duckdb")
    expected = contents(tmp_path / "roomy.duckdb")

    # a run whose stage folder has ~40 KB left: some files stage, the rest cannot
    stage = small_disk / "stage"
    filler = fill(small_disk, leave=40_000)
    (batch,) = plan(discover_from_snapshot(clinic, cfg, landing, wh, snap), 2**40)
    staged = prepare_items(batch, clinic, cfg, stage, None)
    summary = load_batches([staged], clinic, cfg, wh, snap)
    files = summary["files"]
    assert isinstance(files, list)
    full = [f for f in files if f["error"]]
    loaded = [f for f in files if not f["error"]]
    assert full, "the disk was full for at least one file"
    for f in full:
        # the data team reads what happened and that nothing is needed from them
        assert f["status"] == "rejected" and f["rows_loaded"] == 0
        assert str(f["error"]).startswith("stage_full: no space left"), f["error"]
        assert "offered again" in str(f["error"])
    body = receipt_message(clinic, "run-1", files, "aw@localhost", ["team@x"]).get_content()
    assert "stage_full: no space left on the pipeline's stage disk" in body

    # nothing half-loaded: only the files that staged in full are in the warehouse
    with duckdb.connect(str(wh), read_only=True) as con:
        in_wh = dict(
            con.execute("select source_file, count(*) from measurements group by 1").fetchall()
        )
        held_back = con.execute(
            "select file_name, status from ingest_files where error like 'stage_full:%'"
        ).fetchall()
    assert {f for f, _ in held_back} == {str(f["file_name"]) for f in full}
    for f in loaded:
        if str(f["file_name"]) in in_wh:
            assert in_wh[str(f["file_name"])] == f["rows_loaded"]
    assert not set(in_wh) & {str(f["file_name"]) for f in full}
    # no staged rows left of the files held back (the run's stage folder, shared GX verdicts
    # included, goes with the run's `finish`)
    assert not [p for p in stage.rglob("*.parquet") if p.is_file()], "nothing half-staged"
    shutil.rmtree(stage)

    # space returns: the next marker's run loads the files held back, once
    filler.unlink()
    (again,) = plan(discover_from_snapshot(clinic, cfg, landing, wh, snap), 2**40)
    assert sorted(str(i["path"]).rsplit("/", 1)[-1] for i in again) == sorted(
        str(f["file_name"]) for f in full
    )
    load_batches([prepare_items(again, clinic, cfg, stage, None)], clinic, cfg, wh, snap)
    assert contents(wh) == expected
    assert discover_from_snapshot(clinic, cfg, landing, wh, snap) == []
