"""DAG integrity: every DAG file imports without error, fast, without Great Expectations, and
every DAG has tags and retries. Runs DagBag in a fresh interpreter so module-top imports are seen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys, time
t0 = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
t_airflow = time.monotonic()
bag = DagBag(dag_folder=sys.argv[1])


def weight(t):
    # the task's effective priority weight, as the scheduler computes it
    rule = str(getattr(t.weight_rule, "value", t.weight_rule)).lower()
    if "absolute" in rule:
        return t.priority_weight
    upstream = "upstream" in rule
    return t.priority_weight + sum(t.priority_weight for t in t.get_flat_relatives(upstream))


t_parse = time.monotonic() - t_airflow
out = {
    "errors": {k: str(v)[:500] for k, v in bag.import_errors.items()},
    "parse_s": t_parse,
    "gx_imported": any(m.startswith("great_expectations") for m in sys.modules),
    "dags": {
        d.dag_id: {
            "tags": sorted(d.tags or []),
            "retries": {t.task_id: t.retries for t in d.tasks},
            "pools": {t.task_id: t.pool for t in d.tasks},
            "priority": {t.task_id: weight(t) for t in d.tasks},
            "max_active_runs": d.max_active_runs,
            "max_active_tis_per_dag": {t.task_id: t.max_active_tis_per_dag for t in d.tasks},
            "catchup": d.catchup,
            "return_value_logged": sorted(
                t.task_id for t in d.tasks if getattr(t, "show_return_value_in_logs", False)
            ),
        }
        for d in bag.dags.values()
    },
}
print(json.dumps(out))
"""


def _parse(home: Path, dag_folder: Path, extra_env: dict[str, str] | None = None) -> dict:
    env = {
        **os.environ,
        "ALLIANCE_WATCH_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PYTHONPATH": str(ROOT / "dags"),
        **(extra_env or {}),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(dag_folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagbag_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("aw")
    cfg = home / "config" / "clinics"
    cfg.mkdir(parents=True)
    for cid in ("alpha_clinic", "beta_clinic"):
        (cfg / f"{cid}.yaml").write_text(
            f"clinic_id: {cid}\ntimezone: UTC\nformat: reference\n", encoding="utf-8"
        )
    return home


@pytest.fixture(scope="module")
def dagbag(dagbag_home: Path) -> dict:
    return _parse(dagbag_home, ROOT / "dags")


def test_a_task_process_builds_only_its_own_clinics_dag(dagbag_home: Path) -> None:
    """A task's process parses its DAG file with Airflow's parsing context set to its DAG: the
    ingest file then builds that clinic's DAG alone (issue #20: with many clinics, building
    every clinic's DAG was a good part of each task's start-up)."""
    ctx = {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": "ingest_beta_clinic"}
    one = _parse(dagbag_home, ROOT / "dags" / "ingest_clinics.py", ctx)
    assert one["errors"] == {}
    assert set(one["dags"]) == {"ingest_beta_clinic"}
    every = _parse(dagbag_home, ROOT / "dags" / "ingest_clinics.py")
    assert set(every["dags"]) == {"ingest_alpha_clinic", "ingest_beta_clinic"}


def test_no_import_errors(dagbag: dict) -> None:
    assert dagbag["errors"] == {}


def test_one_ingest_dag_per_clinic_config_plus_detection_and_digest(dagbag: dict) -> None:
    ids = set(dagbag["dags"])
    assert {"ingest_alpha_clinic", "ingest_beta_clinic", "detect_ruptures", "weekly_digest"} <= ids


def test_tags_retries_and_no_catchup(dagbag: dict) -> None:
    for dag_id, d in dagbag["dags"].items():
        assert "alliance-watch" in d["tags"], dag_id
        # `finish` alone has none: it fails a run whose earlier task failed, and a retry
        # would send the receipt twice
        assert all(r >= 1 for t, r in d["retries"].items() if t != "finish"), dag_id
        assert d["catchup"] is False, dag_id


def test_every_task_that_opens_the_warehouse_is_in_the_writer_pool(dagbag: dict) -> None:
    for dag_id, d in dagbag["dags"].items():
        for task_id, pool in d["pools"].items():
            # no warehouse: the ingest's file work and its discovery (the ledger read from the
            # analyst snapshot, issue #20 item 2), and the digest's planning and per-clinic
            # rendering (from the read-only analyst snapshot, issue #20 item 4), and the Data
            # Docs (GX's stored results)
            if task_id in ("prepare", "prepare_large", "finish", "data_docs"):
                continue
            if dag_id.startswith("weekly_digest"):
                expected = "duckdb_writer" if task_id == "record_deliveries" else "default_pool"
                assert pool == expected, (dag_id, task_id)
                continue
            assert pool == "duckdb_writer", (dag_id, task_id)


def test_every_pool_the_tasks_use_is_created_by_every_stack(dagbag: dict) -> None:
    """A task in a pool that does not exist is never scheduled (Airflow waits silently): every
    pool the DAGs use is created by `make up`, the compose stack's init and the production
    test's set-up."""
    used = {pool for d in dagbag["dags"].values() for pool in d["pools"].values()}
    assert used - {"default_pool"} == {"duckdb_writer", "ingest_prepare"}
    creators = {
        "standalone.sh": ROOT / "dags" / "tools" / "standalone.sh",
        "docker-compose.yml": ROOT / "docker-compose.yml",
        "test_production_stack.py": ROOT / "tests" / "e2e" / "test_production_stack.py",
        "run_demo.py": ROOT / "dags" / "tools" / "run_demo.py",
    }
    for name, path in creators.items():
        text = path.read_text()
        for pool in used - {"default_pool"}:
            assert any(f"{q}{pool}{q}" in text or f"pools set {pool} " in text for q in "'\""), (
                name,
                pool,
            )


def test_on_the_way_to_the_flags_tasks_go_first(dagbag: dict) -> None:
    """`load`, `finish` and `detect` outrank every `prepare` for a free executor slot (with
    Airflow's default weights every `prepare` outranked every `load`, and with ten clinics a
    ready load waited ~20 s behind prepares: issue #20); `detect` lets the loads waiting for
    the writer slot go first (it drains what they queue: one detection after a burst instead
    of one per load); Data Docs come last."""
    for dag_id, d in dagbag["dags"].items():
        w = d["priority"]
        if dag_id.startswith("ingest_") and dag_id != "ingest_feedback":
            assert min(w["load"], w["finish"]) > max(w["prepare"], w["prepare_large"]), dag_id
        if dag_id == "detect_ruptures":
            assert (
                1 < w["detect"] < 100 == dagbag["dags"]["ingest_alpha_clinic"]["priority"]["load"]
            )
        if dag_id == "publish_data_docs":
            assert w["data_docs"] == 1


def test_parsing_is_fast_and_never_imports_great_expectations(dagbag: dict) -> None:
    assert dagbag["gx_imported"] is False
    assert dagbag["parse_s"] < 5.0  # all DAG files together, cold, on a 2-core machine


def test_detection_runs_one_at_a_time_with_the_next_run_ready(dagbag: dict) -> None:
    """Two detection runs may be active (the second collects the loads that land meanwhile), but
    each task runs in one of them at a time, also under DuckLake where no pool serializes them."""
    d = dagbag["dags"]["detect_ruptures"]
    assert d["max_active_runs"] == 2
    assert d["max_active_tis_per_dag"] == {"detect": 1, "notify_high_severity": 1}


WARMUP_PROBE = r"""
import json, sys, threading
import pipelines.warmup as w
print(json.dumps({
    "preloaded": sorted(w.PRELOADED),
    "airflow": sorted(m for m in sys.modules if m.split(".")[0] == "airflow"),
    "threads": [t.name for t in threading.enumerate()],
}))
"""


def test_worker_warm_up_imports_gx_and_no_airflow_and_starts_no_thread() -> None:
    """pipelines/warmup.py runs in a forkserver / Celery parent before each fork: it must import
    what the tasks need and leave nothing that is unsafe to fork (threads) or Airflow's."""
    out = subprocess.run(
        [sys.executable, "-c", WARMUP_PROBE], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert {
        "great_expectations",
        "pipelines.validation",
        "pipelines.ingest.run",
        "pipelines.jobs",
    } <= set(got["preloaded"])
    assert got["airflow"] == []
    assert got["threads"] == ["MainThread"]


WORKER_WARMUP_PROBE = r"""
import json, sys, threading, time
from airflow import plugins_manager
from airflow.listeners import listener
import worker_warmup
loaded_by_warmup = plugins_manager._get_plugins.cache_info().currsize
t = time.perf_counter()
listener.get_listener_manager()
again = time.perf_counter() - t
print(json.dumps({
    "loaded_by_warmup": loaded_by_warmup,
    "plugins": sorted(p.name for p in plugins_manager._get_plugins()[0]),
    "again_s": again,
    "threads": [t.name for t in threading.enumerate()],
}))
"""


def test_the_worker_warm_up_loads_plugins_and_listeners_once_and_starts_no_thread(
    tmp_path: Path,
) -> None:
    """dags/worker_warmup.py runs where the task processes are forked from (the LocalExecutor's
    forkserver, the Celery worker): each task's start-up then finds Airflow's listener manager
    (every plugin loaded) ready instead of loading it again, which was most of a task's fixed
    cost with many clinics (issue #20). Nothing unsafe to fork: no thread."""
    import os

    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'dags'}:{ROOT}",
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "dags" / "plugins"),
        "ALLIANCE_WATCH_HOME": str(tmp_path / "home"),
    }
    out = subprocess.run(
        [sys.executable, "-c", WORKER_WARMUP_PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded_by_warmup"] == 1
    assert "alliance_watch_answers" in got["plugins"]
    assert got["again_s"] < 0.05  # cached: the task process finds it loaded
    assert got["threads"] == ["MainThread"]
    for script in ("standalone.sh",):
        text = (ROOT / "dags" / "tools" / script).read_text()
        assert "MP_FORKSERVER_PRELOAD=" in text and ",worker_warmup" in text


def test_no_task_writes_its_return_value_into_the_log(dagbag: dict) -> None:
    """Return values carry client codes (prepared files, load and detection summaries); the
    task log must not echo them."""
    logged = {
        d: v["return_value_logged"] for d, v in dagbag["dags"].items() if v["return_value_logged"]
    }
    assert logged == {}
