"""DAG logic through Airflow's own dag.test() on a throwaway SQLite Airflow home: manual runs
naming files, a marker with nothing new, data-contract failures failing without retry (and
telling the data team over real SMTP), lock errors left to the retries, digests per timezone.

The Airflow part runs in a fresh interpreter (Airflow reads its configuration at import), which
prints one JSON line of what happened; the tests assert on that."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Mailbox, smtp_controller

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)

# the dag.test() tests (marked slow one by one) share one ~60 s run: Airflow start-up and
# Great Expectations in `prepare`; the notice and freshness tests below are fast

DRIVER = r"""
import json, os, sqlite3, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"


def tis(dag_id, run_id):
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "select task_id, state, try_number from task_instance where dag_id=? and run_id=?",
            [dag_id, run_id],
        ).fetchall()
    return {t: [s, n] for t, s, n in rows}


def run(dag_id, conf=None):
    # a fresh parse per run, as a worker has: dag.test() resolves params into the DAG object
    dr = DagBag(dag_folder=sys.argv[1]).get_dag(dag_id).test(run_conf=conf)
    return {"state": str(dr.state), "tis": tis(dag_id, dr.run_id)}


out = {"import_errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}}
out["dags"] = {
    d.dag_id: {
        "description": d.description,
        "tags": sorted(d.tags or []),
        "timetable": type(d.timetable).__name__,
        "timezone": str(getattr(d.timetable, "_timezone", "")),
        "retries": {t.task_id: t.retries for t in d.tasks},
    }
    for d in bag.dags.values()
}
out["manual"] = run("ingest_alpha", {"files": ["measures_w1.csv"]})
out["again"] = run("ingest_alpha", {"files": ["measures_w1.csv"]})
out["rest"] = run("ingest_alpha")
out["broken"] = run("ingest_gamma")
# detection woken by no event at all (as when Airflow drops one): it drains the ledger
out["detect"] = run("detect_ruptures")
out["detect_again"] = run("detect_ruptures")
print(json.dumps(out))
"""


def srs_rows(client: str, scores: list[float], first: int = 1) -> list[str]:
    rows = []
    for i, s in enumerate(scores):
        n = first + i
        rows.append(
            ",".join(
                [client, "T01", f"2026-03-{n + 1:02d}", str(n), "SRS", *[str(s)] * 4] + [""] * 9
            )
        )
    return rows


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("aw_dags")
    clinics = home / "config" / "clinics"
    clinics.mkdir(parents=True)
    (clinics / "alpha.yaml").write_text(
        "clinic_id: alpha\ntimezone: America/New_York\nformat: reference\n"
        "notifications:\n  data_team_email: data@alpha.example\n",
        encoding="utf-8",
    )
    (clinics / "beta.yaml").write_text(
        "clinic_id: beta\ntimezone: Asia/Kolkata\nformat: reference\n", encoding="utf-8"
    )
    (clinics / "gamma.yaml").write_text(
        "clinic_id: gamma\ntimezone: Europe/Berlin\nformat: reference\nbogus_key: 1\n",
        encoding="utf-8",
    )
    landing = home / "landing" / "alpha"
    landing.mkdir(parents=True)
    for name, client in (("measures_w1.csv", "A001"), ("measures_w2.csv", "A002")):
        (landing / name).write_text(
            "\n".join([HEADER, *srs_rows(client, [9.5] * 5 + [6])]) + "\n", encoding="utf-8"
        )
    # for the receipt: a file with one row out of range, and an empty one
    mixed = srs_rows("A003", [9.5, 9.0])
    mixed[1] = mixed[1].replace("9.0,9.0,9.0,9.0", "9.0,11.5,9.0,9.0")
    (landing / "measures_w3.csv").write_text("\n".join([HEADER, *mixed]) + "\n", encoding="utf-8")
    (landing / "measures_w4.csv").write_bytes(b"")
    airflow_home = home / "airflow"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ALLIANCE"))},
        "ALLIANCE_WATCH_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "dags" / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "ALLIANCE_WATCH_OPS_EMAIL": "ops@example.org",
        "PYTHONPATH": str(ROOT / "dags"),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [airflow, "pools", "set", "duckdb_writer", "1", "writer"],
        env=env,
        check=True,
        capture_output=True,
    )
    mailbox = Mailbox()
    servers = contextlib.ExitStack()
    smtp = servers.enter_context(smtp_controller(mailbox))
    env |= {
        "ALLIANCE_WATCH_SMTP_HOST": "127.0.0.1",
        "ALLIANCE_WATCH_SMTP_PORT": str(smtp.port),
        "ALLIANCE_WATCH_SMTP_STARTTLS": "false",
    }
    try:
        out = subprocess.run(
            [sys.executable, "-c", DRIVER, str(ROOT / "dags")],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        servers.close()
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["mail"] = [
        {"to": m["To"], "subject": m["Subject"], "body": m.get_content().replace("\r\n", "\n")}
        for m in mailbox.emails
    ]
    result["home"] = str(home)
    return result


def _loaded(home: str) -> list[tuple[str, str]]:
    import duckdb

    con = duckdb.connect(str(Path(home) / "warehouse" / "alliance.duckdb"), read_only=True)
    try:
        return con.execute(
            "select file_name, status from ingest_files order by file_name"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_no_import_errors_and_a_dag_per_clinic_even_a_broken_one(outcome: dict) -> None:
    assert outcome["import_errors"] == {}
    assert {"ingest_alpha", "ingest_beta", "ingest_gamma"} <= set(outcome["dags"])


@pytest.mark.slow
def test_a_broken_config_shows_on_its_own_dag(outcome: dict) -> None:
    gamma = outcome["dags"]["ingest_gamma"]
    assert gamma["description"].startswith("CONFIG ERROR:")
    assert "gamma.yaml" in gamma["description"] and "bogus_key" in gamma["description"]
    assert "config-error" in gamma["tags"]
    assert "config-error" not in outcome["dags"]["ingest_alpha"]["tags"]


@pytest.mark.slow
def test_manual_run_loads_only_the_named_files(outcome: dict) -> None:
    assert outcome["manual"]["state"] == "success"
    assert outcome["manual"]["tis"]["load"][0] == "success"
    # the second file was left for the unnamed run that followed
    assert outcome["rest"]["state"] == "success"
    assert _loaded(outcome["home"]) == [
        ("measures_w1.csv", "loaded"),
        ("measures_w2.csv", "loaded"),
        ("measures_w3.csv", "loaded_with_quarantine"),
        ("measures_w4.csv", "rejected"),
    ]


@pytest.mark.slow
def test_each_run_with_files_sends_its_receipt_to_the_data_team(outcome: dict) -> None:
    """Clinic data teams hear at once what a run accepted and why anything was rejected."""
    assert outcome["manual"]["tis"]["finish"][0] == "success"
    # nothing new, nothing to say: `finish` is skipped (no receipt, no Data Docs event)
    assert outcome["again"]["tis"]["finish"][0] == "skipped"
    receipts = [m for m in outcome["mail"] if m["subject"].startswith("[Alliance Watch] alpha:")]
    assert [(m["to"], m["subject"]) for m in receipts] == [
        (
            "data@alpha.example",
            "[Alliance Watch] alpha: 1 file received, 0 rejected, 0 rows held back",
        ),
        (
            "data@alpha.example",
            "[Alliance Watch] alpha: 3 files received, 1 rejected, 1 row held back",
        ),
    ]
    body = receipts[1]["body"]
    assert "measures_w4.csv\n  REJECTED: nothing loaded\n  reason: empty:" in body
    assert "row reasons: item_out_of_range" in body and "A003" not in body


@pytest.mark.slow
def test_every_run_removes_what_it_staged(outcome: dict) -> None:
    """Staged Parquet holds clinical rows (quarantined ones too): none outlives its run."""
    assert outcome["manual"]["tis"]["finish"] == ["success", 1]
    # after a failure too: `finish` cleans, then fails the run (no second notice, no retry)
    assert outcome["broken"]["tis"]["finish"] == ["failed", 1]
    stage = Path(outcome["home"]) / "stage"
    assert not [p for p in stage.rglob("*") if p.is_file()], list(stage.rglob("*"))
    assert not [p for p in stage.glob("*/*") if p.is_dir()]


@pytest.mark.slow
def test_nothing_new_is_a_quiet_success_without_a_load(outcome: dict) -> None:
    again = outcome["again"]
    assert again["state"] == "success"
    assert again["tis"]["prepare"][0] == "success"
    assert again["tis"]["prepare_large"][0] == "skipped"  # no large file: no task of its own
    assert again["tis"]["load"][0] == "skipped"  # no load, no warehouse event, no detection


@pytest.mark.slow
def test_detection_drains_every_load_whatever_woke_it(outcome: dict) -> None:
    """Three loads of alpha (two ingest runs), and no asset event triggers detection: the run
    still detects every client the loads queued, publishes them, and empties the ledger; a run
    with nothing pending skips its work (no snapshot, no `warehouse.flags` event)."""
    import duckdb

    assert outcome["detect"]["tis"] == {
        "detect": ["success", 1],
        "notify_high_severity": ["success", 1],
    }
    home = Path(outcome["home"]) / "warehouse"
    with duckdb.connect(str(home / "alliance.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from detection_pending").fetchone() == (0,)
        loaded = con.execute(
            "select distinct clinic_id, unnest(client_ids) from loads order by all"
        ).fetchall()
    assert loaded == [("alpha", "A001"), ("alpha", "A002"), ("alpha", "A003")]
    snapshot = home / "snapshot" / "alliance_snapshot.duckdb"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        flagged = con.execute("select distinct clinic_id, client_id from flags order by all")
        assert flagged.fetchall() == [("alpha", "A001"), ("alpha", "A002")]
    assert outcome["detect_again"]["state"] == "success"
    assert outcome["detect_again"]["tis"] == {
        "detect": ["skipped", 1],
        "notify_high_severity": ["skipped", 0],
    }


@pytest.mark.slow
def test_a_contract_failure_fails_at_once_and_tells_the_team(outcome: dict) -> None:
    broken = outcome["broken"]
    assert broken["state"] == "failed"
    state, tries = broken["tis"]["prepare"]
    assert state == "failed" and tries == 1  # retries=3 configured, none used
    assert outcome["dags"]["ingest_gamma"]["retries"]["prepare"] >= 1
    notices = [m for m in outcome["mail"] if "ingest_gamma." in m["subject"]]
    # one notice, from the task that failed; `finish` fails the run without repeating it
    assert [m["subject"] for m in notices if "ingest_gamma.prepare" in m["subject"]] == [
        m["subject"] for m in notices
    ]
    assert len(notices) == 1
    body = notices[0]["body"]
    assert notices[0]["to"] == "ops@example.org"  # gamma's config cannot name its team
    assert "ConfigError" in body and "gamma.yaml" in body and "Log:" in body
    assert "A001" not in body and "9.5" not in body


@pytest.mark.slow
def test_one_digest_dag_per_clinic_timezone(outcome: dict) -> None:
    dags = outcome["dags"]
    ny, kol = dags["weekly_digest_america_new_york"], dags["weekly_digest_asia_kolkata"]
    assert ny["timetable"] == kol["timetable"] == "CronTriggerTimetable"
    assert "America/New_York" in ny["timezone"] and "Asia/Kolkata" in kol["timezone"]
    assert "weekly_digest" in dags  # the by-hand DAG for all clinics


def test_lock_errors_keep_their_retries_contract_errors_do_not() -> None:
    sys.path.insert(0, str(ROOT / "dags"))
    from airflow.sdk.exceptions import AirflowFailException
    from failures import contract_errors_fail_fast

    from pipelines.errors import ConfigError, FileRejected, WarehouseBusy

    with pytest.raises(WarehouseBusy), contract_errors_fail_fast():
        raise WarehouseBusy("held")
    for err in (ConfigError("x.yaml", "timezone", "unknown"), FileRejected("empty", "no rows")):
        with pytest.raises(AirflowFailException), contract_errors_fail_fast():
            raise err


# ----------------------------------------------------------------------- notices, fast and real


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    mailbox = Mailbox()
    servers = contextlib.ExitStack()
    smtp = servers.enter_context(smtp_controller(mailbox))
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("ALLIANCE_WATCH_SMTP_STARTTLS", "false")
    monkeypatch.setenv("ALLIANCE_WATCH_OPS_EMAIL", "ops@example.org")
    yield mailbox
    servers.close()


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from pipelines.settings import paths_from_env

    clinics = tmp_path / "config" / "clinics"
    clinics.mkdir(parents=True)
    (clinics / "late.yaml").write_text(
        "clinic_id: late\ntimezone: UTC\nformat: reference\ncadence_days: 7\n"
        "notifications:\n  data_team_email: data@late.example\n"
        "  immediate_high_severity: true\nclinicians:\n  T01: t01@late.example\n",
        encoding="utf-8",
    )
    (clinics / "ontime.yaml").write_text(
        "clinic_id: ontime\ntimezone: UTC\nformat: reference\ncadence_days: 14\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ALLIANCE_WATCH_HOME", str(tmp_path))
    return paths_from_env().ensure()


def test_a_late_feed_gets_a_notice_to_its_data_team(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: Mailbox
) -> None:
    import datetime as dt

    from pipelines.deliver.freshness import check_freshness
    from pipelines.warehouse import open_warehouse

    p = _home(tmp_path, monkeypatch)
    now = dt.datetime(2026, 6, 15, 6, 0, tzinfo=dt.UTC)
    with open_warehouse(p.warehouse) as conn:
        for clinic, days_ago in (("late", 10), ("ontime", 10)):
            conn.execute(
                "insert into ingest_files (clinic_id, file_name, sha256, status, received_at) "
                "values (?, 'measures.csv', ?, 'loaded', ?)",
                [clinic, clinic * 8, now - dt.timedelta(days=days_ago)],
            )
    (p.inbox / "nobody.ready").touch()
    summary = check_freshness(p, now)
    assert summary["stale"] == ["late"]  # 10 days > 7; ontime's 10 days are within 14
    # the daily check keeps clinic_settings in step with the configs, delivering or not, so
    # the data-quality view judges staleness as this notice does
    with open_warehouse(p.warehouse) as conn:
        assert conn.execute(
            "select clinic_id, cadence_days from clinic_data_quality_weekly order by 1"
        ).fetchall() == [("late", 7), ("ontime", 14)]
    assert summary["unknown_markers"] == ["nobody.ready"]
    assert [m["To"] for m in smtp_env.emails] == ["data@late.example"]
    body = smtp_env.emails[0].get_content()
    assert "late" in body and "7 days" in body and "3.0 days past" in body


def test_failure_notices_quote_our_errors_and_only_name_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: Mailbox
) -> None:
    from pipelines.deliver.notify import FailureFacts, notify_failure, safe_error_text
    from pipelines.errors import WarehouseBusy

    p = _home(tmp_path, monkeypatch)
    assert safe_error_text(ValueError("client A001 scored 12")) == "ValueError (details in the log)"
    facts = FailureFacts(
        "ingest_late",
        "load",
        "manual__1",
        4,
        4,
        safe_error_text(WarehouseBusy("held")),
        "http://x/log",
    )
    assert notify_failure(facts, p.config_dir).ok
    shared = FailureFacts(
        "detect_ruptures", "detect", "r", 1, 4, "KeyError (details in the log)", None
    )
    assert notify_failure(shared, p.config_dir).ok
    first, second = smtp_env.emails
    assert first["To"] == "data@late.example" and "ingest_late.load" in first["Subject"]
    assert "WarehouseBusy: held" in first.get_content() and "http://x/log" in first.get_content()
    assert second["To"] == "ops@example.org"


def test_high_severity_episodes_are_announced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: Mailbox
) -> None:
    import datetime as dt
    import shutil

    from pipelines.deliver.alerts import notify_high_severity
    from pipelines.warehouse import open_warehouse

    p = _home(tmp_path, monkeypatch)
    with open_warehouse(p.warehouse) as conn:
        conn.execute(
            "insert into alert_episodes (alert_episode_id, clinic_id, client_id, clinician_id, instrument, opened_session, opened_date, last_flag_session, max_severity, status, closed_session, closed_date) "
            "values "
            "('e1', 'late', 'C9', 'T01', 'SRS', 6, ?, 6, 'high', 'ongoing', null, null),"
            "('e2', 'late', 'C8', 'T01', 'SRS', 4, ?, 4, 'medium', 'ongoing', null, null),"
            "('e3', 'ontime', 'C7', 'T01', 'SRS', 4, ?, 4, 'high', 'ongoing', null, null)",
            [dt.date(2026, 3, 2)] * 3,
        )
    p.snapshot.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(p.warehouse, p.snapshot)
    assert notify_high_severity(p, [("late", "C9"), ("late", "C8")]) == {
        "late": {"announced": 1, "not_sent": 0}
    }
    assert notify_high_severity(p, None) == {"late": {"announced": 0, "not_sent": 0}}
    (msg,) = smtp_env.emails  # ontime did not opt in; the rerun sent nothing
    assert msg["To"] == "t01@late.example" and "client C9: SRS, session 6" in msg.get_content()


def test_an_ingest_run_tells_its_data_team_what_was_accepted_and_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: Mailbox
) -> None:
    """The receipt an ingest run sends (the `receipt` task calls exactly this with the load's
    summary): every file with its status, rows and reasons, rejected files first; no value
    from a file; only to the clinic's own data team, and not when it turned receipts off."""
    from pipelines.deliver.notify import notify_receipt
    from pipelines.ingest.run import discover_new, load_prepared, prepare_item

    p = _home(tmp_path, monkeypatch)
    landing = p.landing / "late"
    landing.mkdir(parents=True)
    (landing / "measures_good.csv").write_text(
        "\n".join([HEADER, *srs_rows("A001", [9.5, 9.0])]) + "\n", encoding="utf-8"
    )
    out_of_range = srs_rows("A002", [9.5, 9.0])
    out_of_range[1] = out_of_range[1].replace("9.0,9.0,9.0,9.0", "9.0,11.5,9.0,9.0")
    (landing / "measures_mixed.csv").write_text(
        "\n".join([HEADER, *out_of_range]) + "\n", encoding="utf-8"
    )
    (landing / "measures_empty.csv").write_bytes(b"")
    items = discover_new("late", p.config_dir, p.landing, p.warehouse)
    staged = [prepare_item(i, "late", p.config_dir, tmp_path / "stage", None) for i in items]
    files = load_prepared(staged, p.warehouse)["files"]

    sent = notify_receipt("late", "manual__2026-06-15", files, p.config_dir)
    assert sent.ok, sent.error
    (msg,) = smtp_env.emails
    assert msg["To"] == "data@late.example"
    assert msg["Subject"] == "[Alliance Watch] late: 3 files received, 1 rejected, 1 row held back"
    body = msg.get_content().replace("\r\n", "\n")  # as it came over SMTP
    blocks = body.split("\n\n")[1].splitlines()
    assert blocks[:2] == ["measures_empty.csv", "  REJECTED: nothing loaded"]
    assert "reason: empty: the file has no bytes" in body
    assert "Files:   3 (1 loaded, 1 loaded with rows held back, 1 rejected)" in body
    assert "measures_mixed.csv\n  loaded; rows held back\n" in body
    assert "  rows: 2 read, 1 loaded, 1 held back, 0 duplicate" in body
    assert "row reasons: item_out_of_range: item_2 outside 0-10 (SRS, ORS) (1)" in body
    assert "measures_good.csv\n  loaded\n  rows: 2 read, 2 loaded" in body
    assert "Rows:    4 read, 3 loaded, 1 held back, 0 duplicate" in body
    for value in ("A001", "A002", "11.5", "9.5", "T01"):
        assert value not in body, value

    # a clinic without a data team address, a run with no file, receipts turned off: no mail
    assert notify_receipt("ontime", "r", files, p.config_dir).error == (
        "no notifications.data_team_email"
    )
    assert not notify_receipt("late", "r", [], p.config_dir).ok
    cfg = p.config_dir / "clinics" / "late.yaml"
    cfg.write_text(
        cfg.read_text().replace("notifications:\n", "notifications:\n  ingest_receipt: false\n")
    )
    assert "receipts off" in str(notify_receipt("late", "r", files, p.config_dir).error)
    # a config broken after the load: the loaded run does not fail for its receipt
    cfg.write_text(cfg.read_text() + "bogus_key: 1\n")
    assert "clinic config unreadable" in str(notify_receipt("late", "r", files, p.config_dir).error)
    assert len(smtp_env.emails) == 1


def test_a_file_held_back_by_our_fault_is_told_to_the_operators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_env: Mailbox
) -> None:
    """A file rejected as `internal_error` does not fail the run (its neighbours load), so no
    failure notice went out and only the clinic's data team heard of it, in its receipt. The
    operators, who own the fault, now get a notice; a run without such a file sends none."""
    from pipelines.deliver.notify import notify_internal_errors

    files = [
        {"file_name": "measures_1.csv", "status": "loaded", "error": None},
        {
            "file_name": "measures_2.csv",
            "status": "rejected",
            "error": "internal_error: KeyError at ingest.py:12 in _prepare_part (a fault in "
            "Alliance Watch, not in the file; the file is offered again on every run)",
        },
    ]
    assert notify_internal_errors("late", "r", files[:1]) is None
    sent = notify_internal_errors("late", "manual__1", files)
    assert sent is not None and sent.ok, sent
    (msg,) = smtp_env.emails
    assert msg["To"] == "ops@example.org"
    assert msg["Subject"] == "[Alliance Watch] late: 1 file held back by a fault in Alliance Watch"
    body = msg.get_content()
    assert "measures_2.csv" in body and "KeyError at ingest.py:12" in body
    assert "measures_1.csv" not in body
