"""The Airflow ingest's task shape (issue #20 item 2): a clinic's small files are prepared together
in one task and only large ones get a task of their own; discovery reads the ledger from the
analyst snapshot, so it needs no writer slot; whatever the batches, the warehouse ends up as when
`alliance-watch ingest` loads the same files, and a snapshot that lags the ledger loads nothing
twice. Real DuckDB files, real GX; the functions the DAG's tasks call, without Airflow."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines import settings
from pipelines.errors import AllianceWatchError
from pipelines.ingest.batches import SEQ, in_discovery_order, plan, split_small_large
from pipelines.ingest.run import (
    discover_from_snapshot,
    ingest_all,
    load_batches,
    prepare_items,
)
from tests.e2e.stack import generate
from tests.e2e.test_exactly_once import contents

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sample clinics, one file per month and dataset (several files each)."""
    root = tmp_path_factory.mktemp("shape")
    generate(root, seed=5, clinics=2, clients=12, period="month")
    return root


@pytest.fixture(scope="module")
def by_the_cli(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The warehouse `alliance-watch ingest` makes of the same files."""
    cli = tmp_path_factory.mktemp("cli") / "cli.duckdb"
    ingest_all(generated / "config", generated / "landing", cli)
    return contents(cli)


def clinics(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "config" / "clinics").glob("*.yaml"))


def run_as_the_dag_does(
    root: Path, wh: Path, snap: Path, stage: Path, fanout: int
) -> dict[str, list[list[dict]]]:
    """discover -> plan -> prepare each batch (as its own mapped task would) -> load."""
    batches_of: dict[str, list[list[dict]]] = {}
    for clinic in clinics(root):
        items = discover_from_snapshot(
            clinic, root / "config", root / "landing", wh, snap, names=None
        )
        batches = plan(items, fanout)
        batches_of[clinic] = batches
        prepared = [
            prepare_items(b, clinic, root / "config", stage / clinic, None) for b in batches
        ]
        if prepared:
            load_batches(prepared, clinic, root / "config", wh, snap)
    return batches_of


def test_small_files_go_together_and_large_ones_alone() -> None:
    items = [
        {"kind": "delivery", "path": "a.csv", "bytes": 10},
        {"kind": "delivery", "path": "b.csv", "bytes": 5_000},
        {"kind": "rejected", "result": {"file_name": "c"}},
        {"kind": "delivery", "path": "d.csv", "bytes": 999},
        {"kind": "delivery", "path": "e.csv", "bytes": 1_000},
    ]
    batches = plan(items, fanout_bytes=1_000)
    assert [[i.get("path", "rejected") for i in b] for b in batches] == [
        ["a.csv", "rejected", "d.csv"],
        ["b.csv"],
        ["e.csv"],
    ]
    # prepared in any order, loaded in the order discovered (a later export supersedes)
    assert [i[SEQ] for i in in_discovery_order(list(reversed(batches)))] == [0, 1, 2, 3, 4]
    assert plan([], 1_000) == []  # nothing new: no prepare task, no load
    # the DAG: `prepare` takes the small batch itself, each large file goes to `prepare_large`
    small, large = split_small_large(items, fanout_bytes=1_000)
    assert [i.get("path", "rejected") for i in small] == ["a.csv", "rejected", "d.csv"]
    assert [[i["path"] for i in b] for b in large] == [["b.csv"], ["e.csv"]]
    assert split_small_large([], 1_000) == ([], [])
    only_large = split_small_large([{"kind": "delivery", "path": "x", "bytes": 9_999}], 1_000)
    assert only_large == ([], [[{"kind": "delivery", "path": "x", "bytes": 9_999, SEQ: 0}]])


def test_the_fanout_threshold_is_a_setting_refused_by_name_when_wrong() -> None:
    assert settings.prepare_fanout_bytes({}) == 16 * 2**20
    assert settings.prepare_fanout_bytes({"ALLIANCE_WATCH_PREPARE_FANOUT_BYTES": "4096"}) == 4096
    with pytest.raises(AllianceWatchError, match="ALLIANCE_WATCH_PREPARE_FANOUT_BYTES"):
        settings.prepare_fanout_bytes({"ALLIANCE_WATCH_PREPARE_FANOUT_BYTES": "16MB"})


@pytest.mark.parametrize("fanout", [2**40, 1], ids=["one-batch-per-clinic", "one-file-per-task"])
def test_batches_give_the_warehouse_of_the_cli(
    generated: Path, by_the_cli: dict, tmp_path: Path, fanout: int
) -> None:
    wh, snap = tmp_path / "dag.duckdb", tmp_path / "snap" / "snapshot.duckdb"
    batches = run_as_the_dag_does(generated, wh, snap, tmp_path / "stage", fanout)
    for clinic, b in batches.items():
        files = len(list((generated / "landing" / clinic).iterdir()))
        assert files >= 4
        assert [len(x) for x in b] == ([files] if fanout > 1 else [1] * files), clinic
    assert contents(wh) == by_the_cli
    with duckdb.connect(str(wh), read_only=True) as con:
        settled = con.execute("select count(*) from clinic_settings").fetchone()
    assert settled == (len(batches),), "the load records each clinic's settings"
    # the same markers again: the snapshot's ledger knows every file, nothing is prepared
    again = run_as_the_dag_does(generated, wh, snap, tmp_path / "stage2", fanout)
    assert all(b == [] for b in again.values())


def test_discovery_needs_no_writer_and_a_lagging_snapshot_loads_nothing_twice(
    generated: Path, tmp_path: Path
) -> None:
    wh, snap = tmp_path / "wh.duckdb", tmp_path / "snap" / "snapshot.duckdb"
    clinic = clinics(generated)[0]
    cfg = generated / "config"
    first = plan(discover_from_snapshot(clinic, cfg, generated / "landing", wh, snap), 2**40)
    assert len(first) == 1 and len(first[0]) >= 4
    # a load that committed and died before it republished: the snapshot lags the ledger
    load_batches([prepare_items(first[0], clinic, cfg, tmp_path / "s1", None)], clinic, cfg, wh)
    before = contents(wh)
    # discovery while another process holds the live warehouse read-write (a load running)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); "
            "print('held', flush=True); time.sleep(60)",
            str(wh),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # no snapshot yet and the live file held: only the snapshot would do; publish one
        # from the state before the load (empty ledger) to stand for a lagging snapshot
        snap.parent.mkdir(parents=True)
        with duckdb.connect(str(snap)) as con:
            con.execute(
                "create table ingest_files (clinic_id varchar, sha256 varchar, "
                "file_name varchar, status varchar, config_sha varchar, error varchar, "
                "received_at timestamp)"
            )
        t0 = time.monotonic()
        stale = plan(discover_from_snapshot(clinic, cfg, generated / "landing", wh, snap), 2**40)
        assert time.monotonic() - t0 < 10, "discovery did not wait for the writer"
    finally:
        holder.kill()
        holder.wait()
    assert [i["sha256"] for i in stale[0]] == [i["sha256"] for i in first[0]]
    summary = load_batches(
        [prepare_items(stale[0], clinic, cfg, tmp_path / "s2", None)], clinic, cfg, wh, snap
    )
    assert {f["status"] for f in summary["files"]} == {"already_loaded"}  # type: ignore[union-attr]
    assert contents(wh) == before, "nothing doubled"
    # the republished snapshot now shows the ledger: nothing is offered again
    assert discover_from_snapshot(clinic, cfg, generated / "landing", wh, snap) == []


def test_data_docs_builds_coalesce_and_none_is_lost(tmp_path: Path) -> None:
    """Many runs asking for a Data Docs build while one is running: one more build, not one
    each, and every request made before a build starts is in a build."""
    import threading

    from pipelines.ingest.data_docs import build_when_wanted

    builds: list[int] = []  # requests seen by each build
    requests: list[int] = []
    started = threading.Event()

    def slow_build() -> str:
        started.set()
        seen = len(requests)
        time.sleep(0.6)
        builds.append(seen)
        return "index.html"

    def ask() -> str | None:
        requests.append(1)
        return build_when_wanted(tmp_path, slow_build)

    first = threading.Thread(target=ask)
    first.start()
    started.wait(5)
    others = [ask() for _ in range(5)]  # all while the first build runs
    first.join()
    assert others == [None] * 5  # taken over by the running build
    assert len(builds) == 2 and builds[-1] == 6, builds  # the second saw every request
    assert build_when_wanted(tmp_path, slow_build) == "index.html"  # idle: builds at once


def _prepare_in_a_daemon(generated: Path, stage: Path, out: Any) -> None:
    clinic = clinics(generated)[0]
    items = discover_from_snapshot(
        clinic, generated / "config", generated / "landing", stage / "no.duckdb", stage / "s"
    )
    staged = prepare_items(items, clinic, generated / "config", stage / "st", None)
    out.put([s["result"]["status"] for s in staged])


def test_a_celery_worker_process_prepares_its_batch_without_forking_a_pool(
    generated: Path, tmp_path: Path
) -> None:
    """Celery runs tasks in daemonic processes, which may not start children ('daemonic
    processes are not allowed to have children' failed a batch on the Celery stack): the
    batch is then prepared in the task's own process."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_prepare_in_a_daemon, args=(generated, tmp_path, out), daemon=True)
    p.start()
    statuses = out.get(timeout=300)
    p.join(60)
    assert p.exitcode == 0
    assert len(statuses) >= 4 and set(statuses) <= {"loaded", "loaded_with_quarantine"}
