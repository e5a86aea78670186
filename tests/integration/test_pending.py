"""The pending-detection ledger: every load queues the clients it touched in its own transaction,
and detection drains the ledger, so no load goes undetected whatever woke detection up (issue
#20: seven of ten clinics' loads were never detected when Airflow dropped their events)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.detect import pending
from pipelines.ingest.run import discover_new, ingest_all, load_prepared, prepare_item
from pipelines.jobs import drain_detection
from pipelines.settings import Paths, paths_from_env
from pipelines.warehouse import open_warehouse
from tests.conftest import reference_row
from tests.e2e.stack import generate

ROOT = Path(__file__).resolve().parents[2]
FLAGS = "select * exclude (detected_at) from flags order by all"
EPISODES = "select * from alert_episodes order by all"


def srs(client: str, session: int, score: float) -> str:
    return reference_row(client, "T01", f"2026-03-{session:02d}", session, "SRS", [score] * 4)


def queued(wh: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(wh), read_only=True) as conn:
        rows = conn.execute(
            "select clinic_id, client_id from detection_pending order by all"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("ALLIANCE_WATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ALLIANCE_WATCH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("ALLIANCE_WATCH_LANDING", str(tmp_path / "landing"))
    return paths_from_env().ensure()


def test_a_load_queues_the_clients_it_touched_with_its_rows(
    paths: Paths,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C2", 1, 7.0)])
    bad = reference_row("C4", "T01", "2026-03-01", 1, "SRS", [11, 1, 1, 1])  # quarantined
    write_reference("measures_2.csv", [srs("C1", 2, 6.5), srs("C3", 1, 9.5), bad])
    ingest_all(reference_config_dir, paths.landing, paths.warehouse)
    # one row per load and client; a client whose only rows were held back is not queued
    assert queued(paths.warehouse) == [("ref_clinic", c) for c in ("C1", "C1", "C2", "C3")]
    assert query(
        paths.warehouse,
        "select count(*) from detection_pending as p left join loads as l using (load_id) "
        "where not list_contains(l.client_ids, p.client_id) or l.clinic_id <> p.clinic_id",
    ) == [(0,)]
    ingest_all(reference_config_dir, paths.landing, paths.warehouse)  # nothing new
    assert len(queued(paths.warehouse)) == 4


def test_a_load_that_fails_before_it_commits_queues_nobody(
    paths: Paths,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.warehouse import load as loader

    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C2", 1, 7.0)])
    items = discover_new("ref_clinic", reference_config_dir, paths.landing, paths.warehouse)
    staged = [prepare_item(i, "ref_clinic", reference_config_dir, paths.stage, None) for i in items]

    def fail(*args: object) -> None:
        raise OSError("disk gone while writing the ledger row")

    with monkeypatch.context() as m:
        m.setattr(loader, "_ledger_insert", fail)  # after the rows, before the commit
        with pytest.raises(OSError):
            load_prepared(staged, paths.warehouse)
    assert queued(paths.warehouse) == []
    assert query(paths.warehouse, "select count(*) from measurements") == [(0,)]
    # the retry loads the file and queues its clients once; a retry after that queues nothing
    staged = [prepare_item(i, "ref_clinic", reference_config_dir, paths.stage, None) for i in items]
    load_prepared(staged, paths.warehouse)
    load_prepared(staged, paths.warehouse)
    assert queued(paths.warehouse) == [("ref_clinic", "C1"), ("ref_clinic", "C2")]


def test_clearing_removes_only_the_rows_it_read(
    paths: Paths,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    write_reference("measures_1.csv", [srs("C1", 1, 9.0), srs("C2", 1, 7.0)])
    ingest_all(reference_config_dir, paths.landing, paths.warehouse)
    with open_warehouse(paths.warehouse) as conn:
        read = pending.read(conn)
    assert read.clients == [("ref_clinic", "C1"), ("ref_clinic", "C2")]
    # a load commits between the read and the clear (under DuckLake, beside the detection)
    write_reference("measures_2.csv", [srs("C1", 2, 6.5), srs("C3", 1, 9.5)])
    ingest_all(reference_config_dir, paths.landing, paths.warehouse)
    with open_warehouse(paths.warehouse) as conn:
        assert pending.clear(conn, read) == 2
        assert pending.clear(conn, read) == 0  # clearing twice is harmless
    assert queued(paths.warehouse) == [("ref_clinic", "C1"), ("ref_clinic", "C3")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two generated clinics (30 clients each), ingested but never detected."""
    root = tmp_path_factory.mktemp("pending")
    generate(root, seed=7, clinics=2, clients=30, period="all")
    ingest_all(root / "config", root / "landing", root / "wh.duckdb")
    return root


def test_the_drain_detects_every_queued_load_as_a_full_recompute_does(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh, full = tmp_path / "wh.duckdb", tmp_path / "full.duckdb"
    shutil.copyfile(generated / "wh.duckdb", wh)
    shutil.copyfile(generated / "wh.duckdb", full)
    monkeypatch.setenv("ALLIANCE_WATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ALLIANCE_WATCH_CONFIG_DIR", str(generated / "config"))
    monkeypatch.setenv("ALLIANCE_WATCH_WAREHOUSE", str(wh))
    paths = paths_from_env().ensure()
    clients = query(wh, "select count(distinct (clinic_id, client_id)) from measurements")[0][0]
    assert len(set(queued(wh))) == clients  # every loaded client is pending

    # the drain dies after detecting, before clearing: the next drain only repeats the work
    with monkeypatch.context() as m:
        m.setattr(pending, "clear", lambda conn, p: (_ for _ in ()).throw(OSError("killed")))
        with pytest.raises(OSError):
            drain_detection(paths)
    assert len(set(queued(wh))) == clients
    summary = drain_detection(paths)
    assert summary["detected"] is True
    assert summary["clients_requested"] == clients
    assert {tuple(c) for c in summary["clients"]} == set(queued(generated / "wh.duckdb"))
    assert queued(wh) == []

    # `alliance-watch detect` (a full recompute) gives the same rows and clears the ledger too
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "detect", "--warehouse", str(full)]
        + ["--config-dir", str(generated / "config")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert queued(full) == []
    assert query(wh, FLAGS) == query(full, FLAGS) != []
    assert query(wh, EPISODES) == query(full, EPISODES)
    # what analysts read holds the same flags
    assert query(paths.snapshot, FLAGS) == query(full, FLAGS)

    # nothing pending: a cheap no-op that publishes nothing
    before = paths.snapshot.stat().st_mtime_ns
    again = drain_detection(paths)
    assert again == {"detected": False, "clients_requested": 0, "clients": []}
    assert paths.snapshot.stat().st_mtime_ns == before
