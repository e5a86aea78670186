"""Issue 19 end to end on the real stack (`make up`: `dags/tools/standalone.sh`, the API server
with the answers plugin, scheduler, dag-processor, triggerer on 127.0.0.1): a clinic's export is
ingested and detected -> its digest is rendered with answer links -> headless Chromium opens the
digest and clicks "A rupture: we talked about it" -> the confirmation page (served by the plugin
inside the API server) -> the answers watcher starts `ingest_feedback` -> `alert_feedback`
holds the answer -> the next week's digest shows it -> the report shows the answer rate and the
precision. Screenshots of the confirmation and refusal pages go to `artifacts_dir`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import duckdb
import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_answers import _clinic_rows, _write_clinic

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dags" / "tools" / "standalone.sh"
FIXED_MONDAY = dt.date(2026, 11, 30)  # the digest that first shows the drops in _clinic_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


def _last_monday() -> dt.date:
    today = dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=today.weekday())


def _state_env(airflow_home: Path) -> dict[str, str]:
    """The environment `make up` runs Airflow with (its state file of `export` lines)."""
    env: dict[str, str] = {}
    for line in (airflow_home / "standalone.state").read_text(encoding="utf-8").splitlines():
        m = re.match(r'export ([A-Z0-9_]+)="?(.*?)"?$', line)
        if m and "$" not in m.group(2):
            env[m.group(1)] = m.group(2)
    return env


class Installation:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.airflow_home = home / "airflow-standalone"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.airflow_home / 'airflow.db'}?mode=ro", uri=True)

    def runs(self, dag_id: str) -> list[tuple[str, str]]:
        with closing(self.db()) as c:
            return c.execute(
                "select run_id, state from dag_run where dag_id = ? order by id", [dag_id]
            ).fetchall()

    def snapshot_query(self, sql: str) -> list[tuple]:
        snap = self.home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"
        if not snap.exists():
            return []
        copy = self.home / "snapshot_copy.duckdb"
        shutil.copy(snap, copy)
        con = duckdb.connect(str(copy), read_only=True)
        try:
            return con.execute(sql).fetchall()
        except duckdb.CatalogException:
            return []
        finally:
            con.close()

    def wait(self, what: str, check, timeout: float = 120):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    home = tmp_path_factory.mktemp("aw_answers")
    shift = (_last_monday() - dt.timedelta(days=7) - FIXED_MONDAY).days
    _write_clinic(home, _clinic_rows(shift))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ALLIANCE"))},
        "ALLIANCE_WATCH_HOME": str(home),
    }
    up = subprocess.run(
        ["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=300
    )
    s = Installation(home)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "/answers/a/<token>" in up.stdout

        # both watchers (the clinic's inbox, the answers inbox) registered with the triggerer
        def watchers() -> bool:
            with closing(s.db()) as c:
                try:
                    return (
                        c.execute(
                            "select count(*) from trigger where triggerer_id is not null"
                        ).fetchone()[0]
                        >= 2
                    )
                except sqlite3.OperationalError:
                    return False

        s.wait("asset watchers", watchers)
        yield s
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, timeout=90)


def _render(stack: Installation, as_of: dt.date, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The clinic's digests due on `as_of`, rendered as the weekly_digest task does (from the
    analyst snapshot, with the installation's answer settings)."""
    from pipelines.jobs import run_clinic_digests
    from pipelines.settings import paths_from_env

    for k, v in _state_env(stack.airflow_home).items():
        if k.startswith(("ALLIANCE_WATCH", "AIRFLOW__API__BASE_URL")):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("ALLIANCE_WATCH_HOME", str(stack.home))
    summary = run_clinic_digests(paths_from_env(), as_of, "ref_clinic")
    assert summary["due"] >= 2, summary
    return stack.home / "outbox" / "ref_clinic" / (as_of - dt.timedelta(days=7)).isoformat()


def test_click_confirm_load_and_see_it_next_week(
    stack: Installation, monkeypatch: pytest.MonkeyPatch, artifacts_dir: Path
) -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    # the clinic's export arrives; ingest and detection run by themselves
    (stack.home / "inbox" / "ref_clinic.ready").touch()
    stack.wait(
        "13 alert episodes in the snapshot",
        lambda: (stack.snapshot_query("select count(*) from alert_episodes") or [(0,)])[0][0] >= 13,
        timeout=180,
    )
    # the digest of the week with the drops (the week before last), with answer links
    first_monday = _last_monday() - dt.timedelta(days=7)
    outbox = _render(stack, first_monday, monkeypatch)
    page_file = outbox / "T01.html"
    text = (outbox / "T01.txt").read_text(encoding="utf-8")
    links = re.findall(r"http://127\.0\.0\.1:\d+/answers/a/[A-Za-z0-9_-]+", text)
    assert len(links) >= 3 * 9 and not any("C0046" in u for u in links)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(page_file.as_uri())
            block = page.locator("td", has_text="Client C0046").last
            block.get_by_role("link", name="A rupture: we talked about it").click()
            page.wait_for_load_state()
            assert "/answers/a/" in page.url and "C0046" not in page.url
            body = page.inner_text("body")
            assert "your answer is recorded" in body and "A rupture: we talked about it" in body
            assert "Not a rupture" in body  # the way to change it
            page.screenshot(path=str(artifacts_dir / "answers_confirmation.png"), full_page=True)
            confirmed_url = page.url
            token = confirmed_url.rsplit("/", 1)[1]
            tampered = (
                confirmed_url[: -len(token)]
                + token[:12]
                + ("A" if token[12] != "A" else "B")
                + token[13:]
            )
            response = page.goto(tampered)
            assert response is not None and response.status == 403
            refusal = page.inner_text("body")
            assert "not valid" in refusal and "C0046" not in refusal
            page.screenshot(path=str(artifacts_dir / "answers_refusal.png"), full_page=True)
        finally:
            browser.close()

    # the other flagged clients answered too (plain HTTP clicks on the digests' links): the
    # first link of each client of T01 and the third ("Not a rupture") of each client of T02
    others = 0
    for stem, pick in (("T01", 0), ("T02", 2)):
        txt = (outbox / f"{stem}.txt").read_text(encoding="utf-8")
        for block in txt.split("-" * 64)[1:]:
            found = re.findall(r"http://127\.0\.0\.1:\d+/answers/a/[A-Za-z0-9_-]+", block)
            if "Client C0046" in block or len(found) != 3:
                continue
            assert httpx.get(found[pick]).status_code == 200
            others += 1
    assert others >= 9

    # the watcher starts ingest_feedback; the answers reach alert_feedback in the snapshot
    rows = stack.wait(
        "answers in the snapshot",
        lambda: (
            stack.snapshot_query("select count(*) from alert_feedback")[0][0] >= others + 1
            and stack.snapshot_query(
                "select client_id, clinician_id, answer from alert_feedback "
                "where client_id = 'C0046'"
            )
        ),
        timeout=120,
    )
    assert rows == [("C0046", "T01", "rupture_talked")]
    assert stack.runs("ingest_feedback") and all(
        st == "success" for _, st in stack.runs("ingest_feedback") if st != "running"
    )
    assert not list((stack.home / "answers" / "new").glob("*.json"))

    # the next week's digest tells the clinician what they answered and what followed
    # (the next Monday's: its week runs from the last Monday, and today is in it)
    next_outbox = _render(stack, _last_monday() + dt.timedelta(days=7), monkeypatch)
    nxt = " ".join((next_outbox / "T01.txt").read_text(encoding="utf-8").split())
    today = dt.datetime.now(dt.UTC).date()
    assert f"> You held a repair conversation with C0046 on {today.day} {today:%b};" in nxt

    # the report: answer rate and clinician-confirmed precision with its interval
    from pipelines.deliver.report import render_report

    snap = stack.home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"
    html = render_report(snap)
    n_alerts, n_answered, n_rupture = stack.snapshot_query(
        "select n_alerts, n_answered, n_rupture from alert_answer_rates where grain = 'clinic'"
    )[0]
    assert n_answered >= 10
    assert f"{100 * n_answered / n_alerts:.0f}%" in html
    assert re.search(rf"{n_rupture / n_answered:.2f} \(0\.\d\d to [01]\.\d\d\)", html)

    # no log line of the answers' path holds a client code: the API server's access log (the
    # URLs are opaque), the app's own lines, and ingest_feedback's task logs. (The ingest DAG's
    # `load` returns the clients it touched as its XCom, which Airflow logs: not this path.)
    log = (stack.airflow_home / "standalone.log").read_text(encoding="utf-8", errors="replace")
    answer_lines = [
        ln
        for ln in log.splitlines()
        if "/answers/" in ln or "answer recorded" in ln or "answer link refused" in ln
    ]
    assert sum("/answers/a/" in ln for ln in answer_lines) >= others + 2
    task_logs = stack.airflow_home / "logs" / "dag_id=ingest_feedback"
    answer_lines += [
        ln for f in task_logs.rglob("*.log") for ln in f.read_text(encoding="utf-8").splitlines()
    ]
    assert not [ln for ln in answer_lines if re.search(r"C0046|C1\d\d\b|C2\d\d\b", ln)]
