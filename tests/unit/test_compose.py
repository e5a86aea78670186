"""docker-compose.yml: no Docker engine runs here, so its structure is checked as data: the
production stack (Postgres metadata DB, Redis broker, CeleryExecutor, one service per Airflow
component) with the shared landing and inbox volumes, after Airflow's official conventions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_every_component_has_its_service(compose: dict) -> None:
    assert {"postgres", "redis", *AIRFLOW_SERVICES} <= set(compose["services"])
    commands = {n: compose["services"][n].get("command") for n in AIRFLOW_SERVICES[:-1]}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }


def test_celery_on_redis_with_the_metadata_db_in_postgres(compose: dict) -> None:
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        # one required secret for all components (tasks' tokens are checked by the api-server)
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
        assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?")
        assert env["AIRFLOW__API__SECRET_KEY"].startswith("${AIRFLOW_API_SECRET_KEY:?")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
            "http://airflow-apiserver:8080/"
        )


def test_landing_inbox_and_dags_are_shared_by_every_component(compose: dict) -> None:
    assert {"landing", "inbox", "warehouse", "postgres-db"} <= set(compose["volumes"])
    for name in AIRFLOW_SERVICES:
        svc = compose["services"][name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        env = svc["environment"]
        assert mounts[env["ALLIANCE_WATCH_LANDING"]] == "landing", name
        assert mounts[env["ALLIANCE_WATCH_INBOX"]] == "inbox", name
        assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags", name


def test_dependencies_name_real_services_and_wait_for_health(compose: dict) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in ("service_healthy", "service_completed_successfully")
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep


def test_ui_only_on_loopback_and_init_creates_the_writer_pool(compose: dict) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    init = "\n".join(compose["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in init and "pools set duckdb_writer 1" in init


def test_the_image_is_built_from_the_project(compose: dict) -> None:
    build = compose["services"]["airflow-worker"]["build"]
    dockerfile = (ROOT / build["context"] / build["dockerfile"]).read_text(encoding="utf-8")
    assert dockerfile.startswith("#") and "FROM apache/airflow:3.3" in dockerfile
    for part in ("pipelines", "sql", "expectations", "dags", "uv.lock"):
        assert part in dockerfile, part
        assert (ROOT / part).exists(), part


def test_celery_workers_import_the_warm_up_before_forking(compose: dict, tmp_path: Path) -> None:
    """The workers import GX and load Airflow's plugins once (dags/worker_warmup.py via Celery
    `imports`), not per task."""
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "celery_config.CELERY_CONFIG"
    probe = (
        "import json, celery_config as c; "
        "print(json.dumps([c.CELERY_CONFIG['imports'], sorted(c.CELERY_CONFIG)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={
            "PYTHONPATH": str(ROOT / "dags"),
            "PATH": "/usr/bin:/bin",
            "AIRFLOW_HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    imports, keys = json.loads(out.stdout.strip().splitlines()[-1])
    assert "worker_warmup" in imports
    assert {"broker_url", "result_backend", "task_acks_late"} <= set(keys)  # Airflow's defaults


def test_every_component_has_the_answers_inbox_the_plugin_and_the_link_secret(
    compose: dict,
) -> None:
    """Issue 19: the API server serves answer links (plugin in dags/plugins), writes the answers
    inbox that the triggerer watches and a worker loads; the signing secret is required."""
    assert "answers" in compose["volumes"]
    for name in AIRFLOW_SERVICES:
        svc = compose["services"][name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        env = svc["environment"]
        assert mounts[env["ALLIANCE_WATCH_ANSWERS"]] == "answers", name
        assert (
            env["AIRFLOW__CORE__PLUGINS_FOLDER"] == env["AIRFLOW__CORE__DAGS_FOLDER"] + "/plugins"
        )
        assert env["ALLIANCE_WATCH_ANSWER_SECRET"].startswith("${ALLIANCE_WATCH_ANSWER_SECRET:?")
    assert (ROOT / "dags" / "plugins" / "answers_plugin.py").is_file()
    assert "plugins/" in (ROOT / "dags" / ".airflowignore").read_text(encoding="utf-8").split()
