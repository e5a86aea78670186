"""Exactly once whatever happens: an ingest killed with SIGKILL at any moment, then rerun,
leaves the same warehouse as one clean run (every table compared row by row; only load
timestamps and surrogate load ids may differ)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.run import ingest_all
from tests.conftest import reference_row

ROOT = Path(__file__).resolve().parents[2]
# columns that legitimately differ between runs: when something happened, and surrogate ids
VOLATILE = {
    "loaded_at",
    "received_at",
    "detected_at",
    "applied_at",
    "load_id",
    "superseded_at",
    "queued_at",
}
TABLES = (
    "measurements",
    "measurements_history",
    "appointments",
    "quarantined_rows",
    "loads",
    "ingest_files",
    "detection_pending",  # queued with the rows: a killed load queues nobody, a rerun once
)


def srs(client: str, session: int, score: float) -> str:
    return reference_row(client, "T01", f"2026-03-{session:02d}", session, "SRS", [score] * 4)


def deliveries(write_reference) -> None:  # type: ignore[no-untyped-def]
    """Three deliveries: a first export, a correction with one bad row, a re-delivery."""
    first = write_reference(
        "measures_1.csv", [srs("C1", 1, 9.0), srs("C1", 2, 8.0), srs("C2", 1, 7.0)]
    )
    bad = reference_row("C4", "T01", "2026-03-01", 1, "SRS", [11, 1, 1, 1])
    write_reference("measures_2.csv", [srs("C1", 2, 6.5), srs("C3", 1, 9.5), bad])
    write_reference("measures_3.csv", first.read_text().splitlines()[1:])


def contents(wh: Path) -> dict[str, list[tuple]]:
    """Every row of every ingest relation, volatile columns left out (superseded or not kept)."""
    conn = duckdb.connect(str(wh), read_only=True)
    try:
        out: dict[str, list[tuple]] = {}
        for table in TABLES:
            cols = [r[0] for r in conn.execute(f"describe {table}").fetchall()]
            keep = [c for c in cols if c not in VOLATILE]
            if "superseded_at" in cols:
                keep.append("superseded_at is null as is_current")
            rows = conn.execute(f"select {', '.join(keep)} from {table}").fetchall()  # noqa: S608
            out[table] = sorted(rows, key=repr)
        return out
    finally:
        conn.close()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from pipelines.ingest import orchestrate, run as ingest
    from pipelines.warehouse import load as warehouse

    where, nth = sys.argv[4], int(sys.argv[5])
    calls = {"n": 0}

    def kill_on_nth(module, name, after):
        original = getattr(module, name)
        def wrapped(*a, **k):
            calls["n"] += 1
            if not after and calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            out = original(*a, **k)
            if after and calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        setattr(module, name, wrapped)

    if where == "before_commit":  # rows inserted in the open transaction, ledger row next
        kill_on_nth(warehouse, "_ledger_insert", after=False)
    elif where == "after_rows":  # measurements + history written, transaction still open
        kill_on_nth(warehouse, "_load_rows", after=True)
    elif where == "after_commit":  # file n committed, the next not started
        kill_on_nth(orchestrate, "load_staged", after=True)  # where the loader calls it
    ingest.ingest_all(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    print("finished without being killed")
    """
)


@pytest.fixture
def clean(tmp_path: Path, reference_config_dir: Path, write_reference) -> dict[str, list[tuple]]:
    """The contents after one clean run of the three deliveries."""
    deliveries(write_reference)
    ingest_all(reference_config_dir, tmp_path / "landing", tmp_path / "clean.duckdb")
    return contents(tmp_path / "clean.duckdb")


def killed_then_rerun(tmp_path: Path, config: Path, where: str, nth: int) -> Path:
    wh = tmp_path / f"killed-{where}-{nth}.duckdb"
    args = [str(config), str(tmp_path / "landing"), str(wh), where, str(nth)]
    done = subprocess.run(
        [sys.executable, "-c", KILLER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # a worker left behind by the killed process would hold the pipes open
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr[-2000:]
    ingest_all(config, tmp_path / "landing", wh)
    return wh


def test_clean_run_is_what_we_expect(clean: dict[str, list[tuple]]) -> None:
    statuses = sorted((r[1], r[4]) for r in clean["ingest_files"])
    assert statuses == [
        ("measures_1.csv", "loaded"),
        ("measures_2.csv", "loaded_with_quarantine"),
        ("measures_3.csv", "duplicate"),
    ]
    assert len(clean["measurements"]) == 4 and len(clean["measurements_history"]) == 5
    assert len(clean["quarantined_rows"]) == 1


def test_killed_inside_the_second_files_transaction(
    tmp_path: Path, reference_config_dir: Path, clean: dict[str, list[tuple]]
) -> None:
    wh = killed_then_rerun(tmp_path, reference_config_dir, "before_commit", 2)
    assert contents(wh) == clean


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "nth"),
    [
        ("before_commit", 1),
        ("before_commit", 3),  # while recording the re-delivery as a duplicate
        ("after_rows", 1),
        ("after_rows", 2),
        ("after_commit", 1),
        ("after_commit", 2),
    ],
)
def test_killed_at_each_point_then_rerun(
    tmp_path: Path, reference_config_dir: Path, clean: dict[str, list[tuple]], where: str, nth: int
) -> None:
    wh = killed_then_rerun(tmp_path, reference_config_dir, where, nth)
    assert contents(wh) == clean


@pytest.mark.slow
def test_cli_killed_at_random_moments_then_rerun(
    tmp_path: Path, reference_config_dir: Path, clean: dict[str, list[tuple]]
) -> None:
    """The real CLI, SIGKILLed after random delays (several times over the same warehouse)."""
    wh = tmp_path / "random.duckdb"
    cli = [sys.executable, "-m", "pipelines.cli", "ingest", "--quiet"]
    cli += ["--config-dir", str(reference_config_dir), "--landing", str(tmp_path / "landing")]
    cli += ["--warehouse", str(wh)]
    rng = random.Random(5)
    for _ in range(3):
        p = subprocess.Popen(cli, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(4.0, 16.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert contents(wh) == clean


def test_a_retried_load_task_still_names_the_clients_it_loaded(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    """The Airflow `load` task commits a file, then dies (say while publishing the snapshot)
    and is retried: the retry finds the file already loaded, and its asset event must still
    name the file's clients, or incremental detection never looks at them."""
    from pipelines.ingest.run import discover_new, load_prepared, prepare_item

    deliveries(write_reference)
    wh = tmp_path / "wh.duckdb"
    items = discover_new("ref_clinic", reference_config_dir, tmp_path / "landing", wh)
    staged = [
        prepare_item(i, "ref_clinic", reference_config_dir, tmp_path / "stage", None) for i in items
    ]
    first = load_prepared(staged, wh)
    assert first["clients"]
    loaded = contents(wh)
    retry = load_prepared(staged, wh, snapshot=tmp_path / "snap.duckdb")
    assert retry["clients"] == first["clients"]
    assert (tmp_path / "snap.duckdb").exists()  # the snapshot the first attempt never published
    assert contents(wh) == loaded  # and nothing recorded twice
