"""The analyst snapshot: held open read-only by an analyst in another process while the pipeline
loads and republishes it; neither blocks the other. Per-clinic snapshots hold one clinic only."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.run import ingest_all
from pipelines.warehouse import publish_snapshot
from tests.conftest import reference_row

ROOT = Path(__file__).resolve().parents[2]

ANALYST = textwrap.dedent(
    """
    import sys, time, duckdb
    from pathlib import Path
    snapshot, stop = sys.argv[1], Path(sys.argv[2])
    conn = duckdb.connect(snapshot, read_only=True)
    print("open", conn.execute("select count(*) from measurements").fetchone()[0], flush=True)
    queries = 0
    while not stop.exists():  # an analyst busy with the snapshot the whole time
        conn.execute("select clinic_id, avg(total) from client_trajectories group by 1").fetchall()
        queries += 1
        time.sleep(0.05)
    held = conn.execute("select count(*) from measurements").fetchone()[0]
    conn.close()
    fresh = duckdb.connect(snapshot, read_only=True)
    now = fresh.execute("select count(*) from measurements").fetchone()[0]
    print("done", queries, held, now, flush=True)
    """
)


def srs(client: str, session: int, score: float) -> str:
    return reference_row(client, "T01", f"2026-03-{session:02d}", session, "SRS", [score] * 4)


def test_snapshot_held_open_during_a_load_and_publish(
    tmp_path: Path, reference_config_dir: Path, write_reference
) -> None:
    wh, snap = tmp_path / "wh.duckdb", tmp_path / "snap" / "alliance_snapshot.duckdb"
    landing = tmp_path / "landing"
    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C2", 1, 8.0)])
    ingest_all(reference_config_dir, landing, wh, snapshot=snap)
    stop = tmp_path / "stop"
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(snap), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert analyst.stdout is not None
        assert analyst.stdout.readline().split() == ["open", "2"]
        # the pipeline goes on: a new delivery is loaded and the snapshot republished
        write_reference("measures_2.csv", [srs("C3", 1, 7.0), srs("C1", 2, 9.5)])
        (r,) = ingest_all(reference_config_dir, landing, wh, snapshot=snap)
        assert r.status == "loaded"
        # and the live warehouse is free for the next writer at once
        duckdb.connect(str(wh)).close()
    finally:
        stop.touch()
        out, err = analyst.communicate(timeout=60)
    assert analyst.returncode == 0, err[-2000:]
    word, queries, held, now = out.split()
    assert word == "done" and int(queries) > 0
    assert (int(held), int(now)) == (2, 4)  # old rows while held; the new ones once reopened


def test_per_clinic_snapshots_hold_only_their_clinic(
    tmp_path: Path, reference_config_dir: Path, write_reference
) -> None:
    other = reference_config_dir / "clinics" / "other_clinic.yaml"
    other.write_text("clinic_id: other_clinic\ntimezone: UTC\nformat: reference\n")
    write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    (tmp_path / "landing" / "other_clinic").mkdir()
    header = (tmp_path / "landing" / "ref_clinic" / "measures_1.csv").read_text().splitlines()[0]
    (tmp_path / "landing" / "other_clinic" / "measures_x.csv").write_text(
        "\n".join([header, srs("K9", 1, 5.0), srs("K8", 1, 6.0)]) + "\n"
    )
    wh = tmp_path / "wh.duckdb"
    ingest_all(reference_config_dir, tmp_path / "landing", wh)
    snap = publish_snapshot(wh, tmp_path / "snap" / "all.duckdb", per_clinic=True)
    for clinic, n in (("ref_clinic", 1), ("other_clinic", 2)):
        conn = duckdb.connect(str(snap.parent / "clinics" / f"{clinic}.duckdb"), read_only=True)
        try:
            for table in ("measurements", "ingest_files", "loads", "client_trajectories"):
                got = conn.execute(f"select distinct clinic_id from {table}").fetchall()  # noqa: S608
                assert got == [(clinic,)], table
            assert conn.execute("select count(*) from measurements").fetchone() == (n,)
            assert conn.execute("select count(*) from instruments").fetchone() == (5,)
        finally:
            conn.close()


def test_under_ducklake_there_is_no_snapshot_file_to_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.warehouse import publish_snapshot

    monkeypatch.setenv("ALLIANCE_WATCH_WAREHOUSE_BACKEND", "ducklake")
    snap = tmp_path / "snapshot" / "alliance_snapshot.duckdb"
    assert publish_snapshot(tmp_path / "absent.duckdb", snap) == snap
    assert not snap.exists() and not (tmp_path / "absent.duckdb").exists()


def test_the_warehouse_stays_locked_while_its_snapshot_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (a CLI run beside the Airflow pool) must not write the warehouse while
    its bytes are copied: the copy would mix old and new blocks and the snapshot would not
    open. So the lock is held from the checkpoint to the end of the copy."""
    import shutil

    from pipelines.warehouse import open_warehouse
    from pipelines.warehouse import snapshots as wh_module

    wh = tmp_path / "wh.duckdb"
    with open_warehouse(wh) as conn:
        conn.execute("select 1")
    real_copy = shutil.copyfile
    probes: list[int] = []

    def copy_with_a_writer_knocking(src, dst):  # type: ignore[no-untyped-def]
        probe = subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.connect({str(wh)!r}).close()"],
            capture_output=True,
        )
        probes.append(probe.returncode)
        return real_copy(src, dst)

    monkeypatch.setattr(wh_module.shutil, "copyfile", copy_with_a_writer_knocking)
    snap = publish_snapshot(wh, tmp_path / "snap" / "alliance.duckdb", per_clinic=True)
    assert probes and all(rc != 0 for rc in probes), probes  # the writer was kept out
    with duckdb.connect(str(snap), read_only=True) as conn:
        assert conn.execute("select count(*) from measurements").fetchone() == (0,)


def test_per_clinic_snapshots_once_asked_for_follow_every_publish(
    tmp_path: Path, reference_config_dir: Path, write_reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALLIANCE_WATCH_CLINIC_SNAPSHOTS=1 turns them on; from then on every publish (after a
    load, a detection, an erasure) refreshes them, so a clinic's copy never lags the shared
    one."""
    monkeypatch.setenv("ALLIANCE_WATCH_CLINIC_SNAPSHOTS", "1")
    snap = tmp_path / "snap" / "all.duckdb"
    wh = tmp_path / "wh.duckdb"
    write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    ingest_all(reference_config_dir, tmp_path / "landing", wh, snapshot=snap)
    mine = snap.parent / "clinics" / "ref_clinic.duckdb"
    with duckdb.connect(str(mine), read_only=True) as conn:
        assert conn.execute("select count(*) from measurements").fetchone() == (1,)

    monkeypatch.delenv("ALLIANCE_WATCH_CLINIC_SNAPSHOTS")  # the folder now says so
    write_reference("measures_2.csv", [srs("C2", 1, 8.0)])
    ingest_all(reference_config_dir, tmp_path / "landing", wh, snapshot=snap)
    with duckdb.connect(str(mine), read_only=True) as conn:
        assert conn.execute("select count(*) from measurements").fetchone() == (2,)
