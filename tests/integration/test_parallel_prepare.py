"""Files prepared in worker processes while the loader commits: the warehouse ends up exactly as
when one process does everything in order, and a worker's failure stops the run clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.config import load_clinic_configs
from pipelines.ingest import discovery, pool, prepare, stage
from pipelines.ingest.assemble import assemble
from pipelines.ingest.run import ingest_all
from tests.e2e.test_exactly_once import contents

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three sample clinics (wide CSV, Parquet, semicolon/latin-1), several files each."""
    root = tmp_path_factory.mktemp("parallel")
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "generate", "--out", str(root), "--seed", "11"]
        + ["--clients", "30", "--period", "month", "--as-of", "2026-06-01"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return root


def run_with(workers: int, root: Path, wh: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("ALLIANCE_WATCH_PREPARE_WORKERS", str(workers))
    seen: list[str] = []
    results = ingest_all(root / "config", root / "landing", wh, progress=seen.append)
    assert results, "the generated landing has files"
    return seen


def test_workers_give_the_same_warehouse_as_one_process(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [p for p in (generated / "landing").rglob("*") if p.is_file()]
    assert len(files) >= 6
    one = run_with(1, generated, tmp_path / "one.duckdb", monkeypatch)
    two = run_with(2, generated, tmp_path / "two.duckdb", monkeypatch)
    assert not any("processes" in m for m in one)
    assert any(f"preparing {len(files)} files in 2 processes" in m for m in two)
    a, b = contents(tmp_path / "one.duckdb"), contents(tmp_path / "two.duckdb")
    assert a == b
    assert len(a["measurements"]) > 1000


def test_a_failing_worker_stops_the_run_and_keeps_what_was_loaded(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline fault in a worker (not a data problem) is raised to the caller; the files
    loaded before it stay loaded, and the rerun loads the rest."""
    monkeypatch.setenv("ALLIANCE_WATCH_PREPARE_WORKERS", "2")
    real = prepare.prepare_part

    def third_fails(delivery, *args, **kwargs):  # type: ignore[no-untyped-def]
        if delivery.path.name == first_names[2]:
            raise RuntimeError("engine fault")
        return real(delivery, *args, **kwargs)

    configs, _ = load_clinic_configs(generated / "config")
    first_names = [
        p.name
        for cfg in configs.values()
        for p in discovery.list_landing(cfg, generated / "landing")
    ]
    monkeypatch.setattr(pool, "prepare_part", third_fails)
    wh = tmp_path / "wh.duckdb"
    with pytest.raises(RuntimeError, match="engine fault"):
        ingest_all(generated / "config", generated / "landing", wh)
    monkeypatch.setattr(pool, "prepare_part", real)
    rest = ingest_all(generated / "config", generated / "landing", wh)
    assert [r.file_name for r in rest] == first_names[2:]  # the first two stayed loaded
    monkeypatch.setenv("ALLIANCE_WATCH_PREPARE_WORKERS", "1")
    assert contents(wh) == contents(_clean(generated, tmp_path))


def _clean(root: Path, tmp_path: Path) -> Path:
    wh = tmp_path / "clean.duckdb"
    ingest_all(root / "config", root / "landing", wh)
    return wh


def test_files_in_many_parts_on_workers_give_the_same_warehouse(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files cut into many small parts, prepared by two workers: the same rows, line numbers,
    quarantine and counts as one process reading each file whole."""

    monkeypatch.setenv("ALLIANCE_WATCH_PART_BYTES", str(4096))
    run_with(2, generated, tmp_path / "parts.duckdb", monkeypatch)
    monkeypatch.setenv("ALLIANCE_WATCH_PART_BYTES", str(64 * 1024 * 1024))
    run_with(1, generated, tmp_path / "whole.duckdb", monkeypatch)
    assert contents(tmp_path / "parts.duckdb") == contents(tmp_path / "whole.duckdb")
    assert not list(tmp_path.glob("**/*.parts"))


def test_the_same_bytes_under_two_names_are_staged_apart(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A re-delivery (same bytes, another name) prepared beside the original in the same run
    gets its own stage folders: one worker never writes, nor the loader deletes, the other's
    files. The second is recorded as a duplicate with nothing loaded."""
    from tests.e2e.test_exactly_once import srs

    configs, _ = load_clinic_configs(reference_config_dir)
    cfg = configs["ref_clinic"]
    a = discovery.Delivery(cfg.clinic_id, tmp_path / "measures_1.csv", "measures", "ab" * 32, 10)
    b = discovery.Delivery(cfg.clinic_id, tmp_path / "measures_2.csv", "measures", "ab" * 32, 10)
    assert set(stage.stage_folders(a, cfg, tmp_path)).isdisjoint(
        stage.stage_folders(b, cfg, tmp_path)
    )
    rows = [srs(f"C{i:03d}", 1 + i % 9, 5.0 + i % 5) for i in range(200)]
    for name in ("measures_1.csv", "measures_2.csv"):
        write_reference(name, rows)
    monkeypatch.setenv("ALLIANCE_WATCH_PART_BYTES", str(2048))
    monkeypatch.setenv("ALLIANCE_WATCH_PREPARE_WORKERS", "2")
    results = ingest_all(reference_config_dir, tmp_path / "landing", tmp_path / "wh.duckdb")
    assert [(r.status, r.rows_loaded) for r in results] == [("loaded", 200), ("duplicate", 0)]


def test_a_retried_preparation_stages_only_its_own_parts(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    """An attempt stopped after staging (an Airflow task retried into the same stage folder)
    leaves part files behind; the next attempt starts from empty folders, so the loader never
    reads a part (valid or quarantined) that the attempt it loads did not write."""
    import shutil

    import pyarrow.parquet as pq

    from tests.conftest import reference_row
    from tests.e2e.test_exactly_once import srs

    cfg = load_clinic_configs(reference_config_dir)[0]["ref_clinic"]
    bad = reference_row("C999", "T01", "2026-03-01", 1, "SRS", [11, 1, 1, 1])
    write_reference(
        "measures_1.csv", [srs(f"C{i:03d}", 1 + i % 9, 7.0) for i in range(200)] + [bad]
    )
    (d,), _ = discovery.discover(cfg, tmp_path / "landing", {})
    stage = tmp_path / "stage"
    first = prepare.prepare_file(d, cfg, stage, part_bytes=2048, build_docs=False)
    assert (first.result.rows_loaded, first.result.rows_quarantined) == (200, 1)
    assert first.valid_path is not None and first.quarantine_path is not None
    for folder in (first.valid_path, first.quarantine_path):  # a bigger attempt's leftovers
        shutil.copy(sorted(folder.glob("*.parquet"))[0], folder / "p09999.parquet")

    again = prepare.prepare_file(d, cfg, stage, part_bytes=2048, build_docs=False)

    assert again.valid_path is not None and again.quarantine_path is not None
    assert pq.read_table(again.valid_path).num_rows == again.result.rows_loaded == 200
    assert pq.read_table(again.quarantine_path).num_rows == again.result.rows_quarantined == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fault_of_ours_in_one_file_rejects_only_that_file_and_it_is_tried_again(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    workers: int,
) -> None:
    """An unexpected error while preparing one file (a bug of ours, not a problem of the file)
    must not hold back the files beside it, in this run or the next: that file is recorded as
    rejected with `internal_error` and its exception's type only (its message may quote
    values), and it is offered again on every run until it goes through."""
    from pipelines import cli
    from pipelines.ingest import read as readers
    from tests.e2e.test_exactly_once import srs

    for k in (1, 2, 3):
        write_reference(f"measures_{k}.csv", [srs(f"C{k}{i:02d}", 1, 7.0) for i in range(10)])
    real = readers.read_raw

    def faulty(path: Path, dataset: str, cfg, **kw):  # type: ignore[no-untyped-def]
        if "measures_2" in path.name:
            raise ValueError("could not convert 'Quincy Adams 555-0101'")
        return real(path, dataset, cfg, **kw)

    monkeypatch.setattr(readers, "read_raw", faulty)
    monkeypatch.setenv("ALLIANCE_WATCH_PREPARE_WORKERS", str(workers))
    wh = tmp_path / "wh.duckdb"
    with caplog.at_level("ERROR"):
        first = {r.file_name: r for r in ingest_all(reference_config_dir, tmp_path / "landing", wh)}
    assert [first[f"measures_{k}.csv"].status for k in (1, 2, 3)] == [
        "loaded",
        "rejected",
        "loaded",
    ]
    error = str(first["measures_2.csv"].error)
    assert error.startswith("internal_error: ValueError"), error
    assert "Quincy" not in error + caplog.text and "555" not in error + caplog.text
    assert "measures_2.csv" in caplog.text  # the operators' log says which file

    # offered again, still faulty: the command line says so and exits 1
    args = ["ingest", "--config-dir", str(reference_config_dir), "--quiet"]
    args += ["--landing", str(tmp_path / "landing"), "--warehouse", str(wh)]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "1 file(s) held back by a fault in Alliance Watch" in err and "measures_2.csv" in err

    monkeypatch.setattr(readers, "read_raw", real)  # the fix is deployed
    again = ingest_all(reference_config_dir, tmp_path / "landing", wh)
    assert [(r.file_name, r.status, r.rows_loaded) for r in again] == [
        ("measures_2.csv", "loaded", 10)
    ]


def test_a_clinic_config_named_yml_serves_the_airflow_tasks_too(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    """`clinics/<id>.yml` is read as a config (and gets its DAG), so the tasks that open the
    clinic's config by its id find it as well."""
    from pipelines.ingest.run import discover_new, load_prepared, prepare_item
    from tests.e2e.test_exactly_once import srs

    cfg = reference_config_dir / "clinics" / "ref_clinic.yaml"
    cfg.rename(cfg.with_suffix(".yml"))
    write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    wh = tmp_path / "wh.duckdb"
    items = discover_new("ref_clinic", reference_config_dir, tmp_path / "landing", wh)
    staged = [
        prepare_item(i, "ref_clinic", reference_config_dir, tmp_path / "stage", None) for i in items
    ]
    assert load_prepared(staged, wh)["rows"] == 1


def test_a_file_gone_or_changed_after_discovery_is_rejected_alone_and_offered_again(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    """Between `discover` and `prepare` a file is removed, or rewritten: that file is rejected
    with `changed_after_discovery` (the task does not fail, so the rest of the delivery
    loads), and it is offered again when it comes back."""
    from pipelines.ingest.run import discover_new, load_prepared, prepare_item
    from tests.e2e.test_exactly_once import srs

    gone = write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    grown = write_reference("measures_2.csv", [srs("C2", 1, 9.0)])
    write_reference("measures_3.csv", [srs("C3", 1, 9.0)])
    wh = tmp_path / "wh.duckdb"
    items = discover_new("ref_clinic", reference_config_dir, tmp_path / "landing", wh)
    kept = gone.read_bytes()
    gone.unlink()
    grown.write_text(grown.read_text() + srs("C2", 2, 8.0) + "\n")
    staged = [
        prepare_item(i, "ref_clinic", reference_config_dir, tmp_path / "stage", None) for i in items
    ]
    summary = load_prepared(staged, wh)
    outcome = {f["file_name"]: (f["status"], str(f["error"])) for f in summary["files"]}
    assert outcome["measures_3.csv"] == ("loaded", "None")
    for name in ("measures_1.csv", "measures_2.csv"):
        assert outcome[name][0] == "rejected"
        assert outcome[name][1].startswith("changed_after_discovery:"), outcome[name]

    gone.write_bytes(kept)  # delivered again, as it was
    again = discover_new("ref_clinic", reference_config_dir, tmp_path / "landing", wh)
    assert sorted(Path(str(i["path"])).name for i in again) == ["measures_1.csv", "measures_2.csv"]


def _same_size_rewrite(path: Path, old: str, new: str, how: str = "in_place") -> None:
    """Rewrite `path` with `old` replaced by `new` (same length): what a clinic's tool does
    when it re-exports over a file. `in_place`: a new modification time; `in_place_same_mtime`:
    the old one put back (`cp -p`, `rsync --inplace -t`); `renamed_over_same_mtime`: a new
    file written beside it and renamed over it with the old modification time (`rsync -t`)."""
    assert len(old) == len(new)
    st = path.stat()
    text = path.read_text().replace(old, new)
    if how == "renamed_over_same_mtime":
        tmp = path.with_name(".incoming")
        tmp.write_text(text)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        tmp.replace(path)
    else:
        with path.open("r+") as fh:
            fh.write(text)
        shift = 0 if how == "in_place_same_mtime" else 1_000_000_000
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + shift))
    assert path.stat().st_size == st.st_size
    assert (path.stat().st_mtime_ns == st.st_mtime_ns) == (how != "in_place")


@pytest.mark.parametrize("how", ["in_place", "in_place_same_mtime", "renamed_over_same_mtime"])
def test_a_same_size_rewrite_after_discovery_is_rejected_and_its_new_content_loads(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    how: str,
) -> None:
    """A file rewritten with other bytes of the same length between `discover` and `prepare`
    was loaded under the hash of content it no longer held (the size alone was compared): the
    ledger then claimed bytes the warehouse never saw. Now it is rejected as
    `changed_after_discovery`, and the new content is offered and loads on the next run."""
    from pipelines.ingest.run import discover_new, load_prepared, prepare_item
    from tests.e2e.test_exactly_once import srs

    rewritten = write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    write_reference("measures_2.csv", [srs("C2", 1, 9.0)])
    wh = tmp_path / "wh.duckdb"
    landing = tmp_path / "landing"
    items = discover_new("ref_clinic", reference_config_dir, landing, wh)
    _same_size_rewrite(rewritten, "9.0,9.0,9.0,9.0", "8.0,8.0,8.0,8.0", how)
    staged = [
        prepare_item(i, "ref_clinic", reference_config_dir, tmp_path / "s", None) for i in items
    ]
    outcome = {
        f["file_name"]: (f["status"], str(f["error"])) for f in load_prepared(staged, wh)["files"]
    }
    assert outcome["measures_2.csv"] == ("loaded", "None")
    assert outcome["measures_1.csv"][0] == "rejected"
    assert outcome["measures_1.csv"][1].startswith("changed_after_discovery:"), outcome

    again = discover_new("ref_clinic", reference_config_dir, landing, wh)
    assert [Path(str(i["path"])).name for i in again] == ["measures_1.csv"]
    staged = [
        prepare_item(i, "ref_clinic", reference_config_dir, tmp_path / "s", None) for i in again
    ]
    assert [f["status"] for f in load_prepared(staged, wh)["files"]] == ["loaded"]
    conn = duckdb.connect(str(wh), read_only=True)
    try:
        totals = conn.execute(
            "select client_id, total from measurements order by client_id"
        ).fetchall()
    finally:
        conn.close()
    assert totals == [("C1", 32.0), ("C2", 36.0)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_rewritten_while_it_is_read_is_rejected_and_its_neighbours_load(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """A small file is read from the landing folder by its part's preparation (in a worker
    process when there are several): a rewrite while it is read is caught right after the
    read, where it happened, and the rest of the delivery loads."""
    from tests.e2e.test_exactly_once import srs

    path = write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    write_reference("measures_2.csv", [srs("C2", 1, 9.0)])
    write_reference("measures_3.csv", [srs("C3", 1, 9.0)])
    real = prepare._prepare_part

    def reading_while_rewritten(delivery, *args, **kwargs):  # type: ignore[no-untyped-def]
        outcome = real(delivery, *args, **kwargs)
        if delivery.path == path:
            _same_size_rewrite(path, "9.0,9.0,9.0,9.0", "8.0,8.0,8.0,8.0")
        return outcome

    monkeypatch.setattr(prepare, "_prepare_part", reading_while_rewritten)
    monkeypatch.setenv("ALLIANCE_WATCH_PREPARE_WORKERS", str(workers))
    results = ingest_all(reference_config_dir, tmp_path / "landing", tmp_path / "wh.duckdb")
    outcome = {r.file_name: (r.status, str(r.error)) for r in results}
    assert outcome["measures_2.csv"] == outcome["measures_3.csv"] == ("loaded", "None")
    assert outcome["measures_1.csv"][0] == "rejected"
    assert outcome["measures_1.csv"][1].startswith("changed_after_discovery:"), outcome
    assert not list((tmp_path / "landing").parent.rglob("*.parquet"))


def test_a_large_file_rewritten_while_it_is_copied_into_parts_is_rejected(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large file is copied into parts before it is read: a rewrite during the copy is
    caught once the copy is done, and no part is left behind."""
    from pipelines.config import load_clinic_config
    from pipelines.ingest import parts as batching
    from tests.e2e.test_exactly_once import srs

    cfg = load_clinic_config(reference_config_dir / "clinics" / "ref_clinic.yaml")
    path = write_reference("measures_1.csv", [srs(f"C{i}", 1, 9.0) for i in range(1, 40)])
    (d,), _ = discovery.discover(cfg, tmp_path / "landing", {})
    real = batching.write_chunks

    def copying_while_rewritten(*args, **kwargs):  # type: ignore[no-untyped-def]
        parts = real(*args, **kwargs)
        _same_size_rewrite(path, "C1,", "C9,")
        return parts

    monkeypatch.setattr(batching, "write_chunks", copying_while_rewritten)
    stage = tmp_path / "stage"
    staged = prepare.prepare_file(d, cfg, stage, part_bytes=1024)
    assert staged.result.status == "rejected"
    assert str(staged.result.error).startswith("changed_after_discovery:")
    assert not [f for f in stage.rglob("*") if f.is_file()]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (FileNotFoundError(2, "No such file or directory"), "changed_after_discovery"),
        (PermissionError(13, "Permission denied"), "unreadable"),
    ],
    ids=["gone", "no_permission"],
)
@pytest.mark.parametrize("size", ["small", "large"])
def test_a_file_that_cannot_be_read_after_discovery_is_rejected_for_that(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    fault: OSError,
    code: str,
    size: str,
) -> None:
    """Removed, or made unreadable, between `discover` and its reading: a small file (read in
    place) was rejected as an `internal_error` of ours, and a large one (copied into parts)
    made the whole run fail. Each is now rejected alone with what happened."""
    from pipelines.config import load_clinic_config
    from pipelines.ingest import parts as batching
    from pipelines.ingest import read as readers
    from tests.e2e.test_exactly_once import srs

    cfg = load_clinic_config(reference_config_dir / "clinics" / "ref_clinic.yaml")
    rows = 40 if size == "large" else 1
    path = write_reference("measures_1.csv", [srs(f"C{i}", 1, 9.0) for i in range(1, rows + 1)])
    (d,), _ = discovery.discover(cfg, tmp_path / "landing", {})
    fault.filename = str(path)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise fault

    if size == "large":
        monkeypatch.setattr(batching, "write_chunks", refuse)
    else:
        monkeypatch.setattr(readers, "read_raw", refuse)
    staged = prepare.prepare_file(d, cfg, tmp_path / "stage", part_bytes=1024)
    assert staged.result.status == "rejected"
    assert str(staged.result.error).startswith(f"{code}:"), staged.result.error


def test_discovery_skips_a_file_gone_before_hashing_and_reports_an_unreadable_one(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file listed and then renamed away before it is hashed, or one that cannot be opened
    (the clinic's tool set no read permission), made `discover` raise: no file of the clinic
    was ingested. Now the vanished one is simply not there, the unreadable one is rejected
    alone with `unreadable` (offered again once readable), and the others load."""
    from pipelines.config import load_clinic_config
    from tests.e2e.test_exactly_once import srs

    cfg = load_clinic_config(reference_config_dir / "clinics" / "ref_clinic.yaml")
    vanishing = write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    locked = write_reference("measures_2.csv", [srs("C2", 1, 9.0)])
    write_reference("measures_3.csv", [srs("C3", 1, 9.0)])
    real = discovery.sha256_of

    def hashing(path: Path) -> str:
        # root reads any file whatever its mode, so the fault is injected where the file opens
        if path == vanishing:
            path.unlink()
        if path == locked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(discovery, "sha256_of", hashing)
    listed = discovery.list_landing
    monkeypatch.setattr(  # a file listed, then renamed away before it is looked at
        discovery, "list_landing", lambda *a: [*listed(*a), vanishing.with_name("measures_0.csv")]
    )
    found, rejected = discovery.discover(cfg, tmp_path / "landing", {})
    monkeypatch.setattr(discovery, "list_landing", listed)
    assert [d.path.name for d in found] == ["measures_3.csv"]
    (r,) = rejected
    assert (r.file_name, r.status) == ("measures_2.csv", "rejected")
    assert str(r.error).startswith("unreadable: Permission denied"), r.error
    assert r.dataset == "measures"  # by its name: a measures file arrived, unreadable

    wh = tmp_path / "wh.duckdb"
    monkeypatch.setattr(discovery, "sha256_of", lambda p: hashing(p) if p == locked else real(p))
    results = ingest_all(reference_config_dir, tmp_path / "landing", wh)
    assert {r.file_name: r.status for r in results} == {
        "measures_2.csv": "rejected",
        "measures_3.csv": "loaded",
    }
    monkeypatch.setattr(discovery, "sha256_of", real)  # readable again
    results = ingest_all(reference_config_dir, tmp_path / "landing", wh)
    assert {r.file_name: r.status for r in results} == {"measures_2.csv": "loaded"}


def test_a_file_removed_once_read_in_full_still_loads(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
) -> None:
    """A clinic's tool may clear the landing folder as soon as the run has read it: rows read
    in full from the hashed bytes are kept, not rejected for the file being gone."""
    from pipelines.config import load_clinic_config
    from tests.e2e.test_exactly_once import srs

    cfg = load_clinic_config(reference_config_dir / "clinics" / "ref_clinic.yaml")
    path = write_reference("measures_1.csv", [srs("C1", 1, 9.0)])
    (d,), _ = discovery.discover(cfg, tmp_path / "landing", {})
    stage = tmp_path / "stage"
    parts = prepare.split_delivery(d, cfg, stage)
    outcomes = [prepare.prepare_part(d, cfg, p, len(parts), stage, None, False) for p in parts]
    path.unlink()
    staged = assemble(d, cfg, stage, parts, outcomes)
    assert (staged.result.status, staged.result.rows_loaded) == ("loaded", 1)


def test_a_rejected_file_removed_once_read_keeps_its_own_reason(
    tmp_path: Path,
    reference_config_dir: Path,
    write_reference,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file judged and rejected, then removed by the clinic's tool right after it was read:
    the data team hears why it was rejected, not that it changed."""
    from pipelines.config import load_clinic_config

    cfg = load_clinic_config(reference_config_dir / "clinics" / "ref_clinic.yaml")
    path = write_reference("measures_1.csv", ["x;y;z"], header="a;b;c")
    (d,), _ = discovery.discover(cfg, tmp_path / "landing", {})
    real = prepare._prepare_part

    def read_then_removed(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return real(*args, **kwargs)
        finally:
            path.unlink()

    monkeypatch.setattr(prepare, "_prepare_part", read_then_removed)
    staged = prepare.prepare_file(d, cfg, tmp_path / "stage")
    assert staged.result.status == "rejected"
    assert not str(staged.result.error).startswith("changed_after_discovery"), staged.result.error
