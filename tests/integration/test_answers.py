"""Clinicians answer each alert in one click (issue 19): signed opaque tokens with key rotation,
the endpoint served by uvicorn on 127.0.0.1 (refusals, 1,000 concurrent clicks, logs without
client codes), the answers inbox loaded exactly once into `alert_feedback`, `alert_outcomes`
and `alert_answer_rates`, the digest's links and last week's answers, the notice's links, the
data-team answer rate, the report section, `calibrate`, and `forget`.

Real parts: a warehouse ingested and detected from reference CSV files, a real uvicorn server.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipelines.answers import inbox as answers_inbox
from pipelines.answers.load import load_answers, load_into
from pipelines.answers.tokens import Answer, AnswerClaim, TokenRefused, answer_links, sign, verify
from pipelines.deliver.answer_links import followup_text, links_for
from pipelines.deliver.outcomes import suggest_budget, wilson
from pipelines.errors import ConfigError
from pipelines.settings import AnswerSettings, answer_settings_from_env, paths_from_env
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"test-secret-0123456789abcdef"
OLD_SECRET = b"old-secret-0123456789abcdefgh"
OTHER_SECRET = b"another-installation-secret-xyz"
EPISODE = "ref_clinic:C0046:SRS:8"
FAR = dt.date(2099, 1, 1)
HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)


def claim(answer: Answer = Answer.TALKED, episode: str = EPISODE, clinician: str = "T01",
          expires: dt.date = FAR) -> AnswerClaim:  # fmt: skip
    return AnswerClaim(episode, clinician, answer, expires)


# ------------------------------------------------------------------------------------ tokens


def test_a_token_round_trips_and_holds_nothing_readable() -> None:
    token = sign(claim(), SECRET)
    assert verify(token, (SECRET,)) == claim()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    for text in ("C0046", "ref_clinic", "T01", "SRS", "rupture"):
        assert text.lower() not in token.lower()
    # the same fields give the same token (a digest rendered twice is the same digest) ...
    assert sign(claim(), SECRET) == token
    # ... and each answer its own
    assert len({sign(claim(a), SECRET) for a in Answer}) == 3


def test_a_tampered_token_is_refused_at_every_position() -> None:
    token = sign(claim(), SECRET)
    for i in range(len(token)):
        swapped = "A" if token[i] != "A" else "B"
        bad = token[:i] + swapped + token[i + 1 :]
        with pytest.raises(TokenRefused) as e:
            verify(bad, (SECRET,))
        assert e.value.reason in ("signature", "malformed")
    for bad in ("", "x", token[:-4], token + "AAAA", "%%%", "A" * 2000):
        with pytest.raises(TokenRefused):
            verify(bad, (SECRET,))


def test_expired_and_foreign_tokens_are_refused() -> None:
    with pytest.raises(TokenRefused, match="expired"):
        verify(sign(claim(expires=dt.date(2026, 1, 1)), SECRET), (SECRET,), dt.date(2026, 1, 2))
    assert verify(sign(claim(expires=dt.date(2026, 1, 1)), SECRET), (SECRET,), dt.date(2026, 1, 1))
    with pytest.raises(TokenRefused, match="signature"):
        verify(sign(claim(), OTHER_SECRET), (SECRET,))
    with pytest.raises(TokenRefused, match="signature"):
        verify(sign(claim(), SECRET), ())


def test_rotation_accepts_the_previous_secret_until_links_expire() -> None:
    old_link = sign(claim(), OLD_SECRET)
    env = {
        "ALLIANCE_WATCH_ANSWER_SECRET": SECRET.decode(),
        "ALLIANCE_WATCH_ANSWER_SECRET_PREVIOUS": OLD_SECRET.decode(),
        "AIRFLOW__API__BASE_URL": "http://127.0.0.1:8080/",
    }
    s = answer_settings_from_env(env)
    assert s.secrets == (SECRET, OLD_SECRET) and s.base_url == "http://127.0.0.1:8080/answers"
    assert verify(old_link, s.secrets) == claim()  # sent before the rotation: still valid
    assert verify(sign(claim(), s.secrets[0]), (SECRET,)) == claim()  # new links: new secret
    # once the previous secret is retired, its links are refused
    retired = answer_settings_from_env({"ALLIANCE_WATCH_ANSWER_SECRET": SECRET.decode()})
    with pytest.raises(TokenRefused):
        verify(old_link, retired.secrets)


def test_answer_settings_from_files_and_clear_errors(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text(SECRET.decode() + "\n", encoding="utf-8")
    s = answer_settings_from_env(
        {
            "ALLIANCE_WATCH_ANSWER_SECRET_FILE": str(f),
            "ALLIANCE_WATCH_ANSWER_BASE_URL": "http://h/a/",
        }
    )
    assert s.secrets == (SECRET,) and s.base_url == "http://h/a" and s.enabled
    assert not answer_settings_from_env({}).enabled  # no secret: digests carry no links
    with pytest.raises(ConfigError, match="at least 16 characters"):
        answer_settings_from_env({"ALLIANCE_WATCH_ANSWER_SECRET": "short"})
    with pytest.raises(ConfigError, match="cannot read"):
        answer_settings_from_env({"ALLIANCE_WATCH_ANSWER_SECRET_FILE": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="LINK_DAYS"):
        answer_settings_from_env({"ALLIANCE_WATCH_ANSWER_LINK_DAYS": "forever"})


# --------------------------------------------------------------------------- the endpoint


class Served:
    def __init__(self, proc: subprocess.Popen[str], base: str, answers: Path, log: Path) -> None:
        self.proc, self.base, self.answers, self.log = proc, base, answers, log

    def url(self, c: AnswerClaim, secret: bytes = SECRET) -> str:
        return f"{self.base}/a/{sign(c, secret)}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The answer app served by uvicorn (its own process, access log on) on 127.0.0.1."""
    port = free_port()
    answers = tmp_path / "answers"
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "ALLIANCE_WATCH_ANSWER_SECRET": SECRET.decode(),
        "ALLIANCE_WATCH_ANSWER_SECRET_PREVIOUS": OLD_SECRET.decode(),
        "ALLIANCE_WATCH_ANSWERS": str(answers),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "pipelines.answers.app:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.1)
    try:
        yield Served(proc, f"http://127.0.0.1:{port}", answers, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_click_records_one_answer_and_the_page_offers_the_others(served: Served) -> None:
    import httpx

    r = httpx.get(served.url(claim()))
    assert r.status_code == 200
    assert "A rupture: we talked about it" in r.text and "C0046" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    (a,) = answers_inbox.pending(served.answers)
    assert (a.alert_episode_id, a.clinician_id, a.answer) == (EPISODE, "T01", "rupture_talked")
    assert (served.answers / answers_inbox.MARKER).exists()
    # the two other answers, as links relative to the page, change it; the last one counts
    hrefs = re.findall(r'class="change" href="([^"]+)">([^<]+)<', r.text)
    assert [label for _, label in hrefs] == ["A rupture: not talked about yet", "Not a rupture"]
    r2 = httpx.get(f"{served.base}/a/{hrefs[1][0]}")
    assert r2.status_code == 200 and "Not a rupture" in r2.text
    assert [x.answer for x in answers_inbox.pending(served.answers)] == [
        "rupture_talked",
        "not_rupture",
    ]
    # nothing in the stored answer but the four fields and an id: never the token
    stored = json.loads(answers_inbox.pending(served.answers)[0].path.read_text())
    assert set(stored) == {"answer_id", "alert_episode_id", "clinician_id", "answer", "answered_at"}


def test_refusals_say_nothing_about_the_client_and_record_nothing(served: Served) -> None:
    import httpx

    good = sign(claim(), SECRET)
    tampered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    cases = {
        "tampered": (f"{served.base}/a/{tampered}", 403),
        "foreign": (served.url(claim(), OTHER_SECRET), 403),
        "expired": (served.url(claim(expires=dt.date(2020, 1, 1))), 410),
        "garbage": (f"{served.base}/a/not-a-token", 400),
    }
    for name, (url, status) in cases.items():
        r = httpx.get(url)
        assert r.status_code == status, name
        assert "not valid" in r.text or "expired" in r.text, name
        for text in ("C0046", "ref_clinic", "T01", "SRS"):
            assert text not in r.text, (name, text)
    assert answers_inbox.pending(served.answers) == []
    # a link signed with the previous secret (rotation) still works
    assert httpx.get(served.url(claim(), OLD_SECRET)).status_code == 200


def test_1000_clicks_from_20_concurrent_clients_one_answer_each_nothing_lost(
    served: Served,
) -> None:
    import httpx

    clicks = [
        claim(list(Answer)[i % 3], f"ref_clinic:C{i % 97:04d}:SRS:{i % 7 + 1}", f"T{i % 5:02d}")
        for i in range(1000)
    ]
    statuses: list[int] = []
    lock = threading.Lock()

    def client(share: list[AnswerClaim]) -> None:
        with httpx.Client(timeout=30) as c:
            for cl in share:
                code = c.get(served.url(cl)).status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=client, args=(clicks[i::20],)) for i in range(20)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert statuses == [200] * 1000
    got = Counter(
        (a.alert_episode_id, a.clinician_id, a.answer)
        for a in answers_inbox.pending(served.answers)
    )
    assert got == Counter((c.alert_episode_id, c.clinician_id, c.answer.value) for c in clicks)
    assert len({a.answer_id for a in answers_inbox.pending(served.answers)}) == 1000
    assert not list((served.answers / "new").glob(".*"))  # no temporary file left behind
    # the access log has every request, and no URL or line holds a client or clinic code
    served.proc.terminate()
    served.proc.wait(timeout=10)
    log = served.log.read_text()
    assert log.count('"GET /a/') == 1000
    # each logged path is an issued token (opaque: see the token tests) and the rest of every
    # line holds no client, clinician or clinic code and no answer
    issued = {sign(c, SECRET) for c in clicks}
    assert set(re.findall(r'"GET /a/([A-Za-z0-9_-]+) HTTP', log)) == issued
    rest = re.sub(r"/a/[A-Za-z0-9_-]+", "/a/TOKEN", log)
    assert not re.search(r"C\d{4}|ref_clinic|T0\d|rupture", rest)
    print(f"1000 clicks, 20 clients: {elapsed:.2f} s ({1000 / elapsed:.0f} clicks/s)")


# -------------------------------------------------------------------------- the warehouse


def _srs_row(client: str, clinician: str, date: dt.date, n: int, total: float) -> str:
    b = math.floor(total / 4 * 10) / 10
    items = [b, b, b, round(total - 3 * b, 1)]
    return ",".join([client, clinician, date.isoformat(), str(n), "SRS", *map(str, items)]
                    + [""] * 8 + [""])  # fmt: skip


def _write_clinic(root: Path, rows: list[str]) -> None:
    (root / "config" / "clinics").mkdir(parents=True, exist_ok=True)
    (root / "config" / "clinics" / "ref_clinic.yaml").write_text(
        "clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n"
        "clinicians:\n  T01: t01@clinic.example\n  T02: t02@clinic.example\n",
        encoding="utf-8",
    )
    (root / "landing" / "ref_clinic").mkdir(parents=True, exist_ok=True)
    (root / "landing" / "ref_clinic" / "measures_1.csv").write_text(
        "\n".join([HEADER, *rows]) + "\n", encoding="utf-8"
    )


def _clinic_rows(shift_days: int = 0) -> list[str]:
    """C0046 (T01): steady near 39 for seven weekly sessions, a drop to 28 on 25 Nov 2026, then
    36.1 and 37.4. C1xx (T01) and C2xx (T02): twelve more clients with one drop each. Every
    date moved by `shift_days` (a multiple of 7 keeps the weekdays)."""
    shifted = dt.timedelta(days=shift_days)
    rows = [_shifted_row(r, shifted) for r in _clinic_rows_fixed()]
    return rows


def _shifted_row(row: str, by: dt.timedelta) -> str:
    cells = row.split(",")
    cells[2] = (dt.date.fromisoformat(cells[2]) + by).isoformat()
    return ",".join(cells)


def _clinic_rows_fixed() -> list[str]:
    start = dt.date(2026, 10, 7)
    steady = [39.0, 39.2, 38.8, 39.0, 39.1, 38.9, 39.0]
    rows = [_srs_row("C0046", "T01", start + dt.timedelta(days=7 * i), i + 1, s)
            for i, s in enumerate(steady)]  # fmt: skip
    rows += [
        _srs_row("C0046", "T01", dt.date(2026, 11, 25), 8, 28.0),
        _srs_row("C0046", "T01", dt.date(2026, 12, 2), 9, 36.1),
        _srs_row("C0046", "T01", dt.date(2026, 12, 4), 10, 37.4),
    ]
    for k in range(12):
        client, clinician = (f"C1{k:02d}", "T01") if k < 8 else (f"C2{k:02d}", "T02")
        for i, s in enumerate(steady):
            rows.append(_srs_row(client, clinician, start + dt.timedelta(days=7 * i), i + 1, s))
        rows.append(_srs_row(client, clinician, dt.date(2026, 11, 24), 8, 27.0 + k / 10))
        rows.append(_srs_row(client, clinician, dt.date(2026, 12, 1), 9, 38.9 if k % 2 else 30.0))
        rows.append(_srs_row(client, clinician, dt.date(2026, 12, 3), 10, 39.0 if k % 2 else 31.0))
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clinic ingested and detected (real CSV, real GX, real DuckDB), built once."""
    from pipelines.detect.ruptures import DetectParams, detect
    from pipelines.ingest.run import ingest_all
    from pipelines.warehouse import open_warehouse

    root = tmp_path_factory.mktemp("answers-clinic")
    _write_clinic(root, _clinic_rows())
    ingest_all(root / "config", root / "landing", root / "built.duckdb")
    with open_warehouse(root / "built.duckdb") as conn:
        # every client of this 13-client clinic drops in the same week: the default alert
        # ceiling would raise the next week's bar, and these tests follow one client's episode
        detect(conn, params=DetectParams(alert_ceiling=None))
    return root


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A fresh copy of the built installation under ALLIANCE_WATCH_HOME = tmp_path."""
    shutil.copytree(built / "config", tmp_path / "config")
    (tmp_path / "warehouse").mkdir()
    shutil.copyfile(built / "built.duckdb", tmp_path / "warehouse" / "alliance.duckdb")
    monkeypatch.setenv("ALLIANCE_WATCH_HOME", str(tmp_path))
    monkeypatch.setenv("ALLIANCE_WATCH_ANSWER_SECRET", SECRET.decode())
    monkeypatch.setenv("ALLIANCE_WATCH_ANSWER_BASE_URL", "http://127.0.0.1:9/answers")
    return paths_from_env().ensure()


def _episodes(paths, clinician: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    conn = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return [
            e
            for (e,) in conn.execute(
                "select alert_episode_id from alert_episodes "
                "where ? is null or clinician_id = ? order by 1",
                [clinician, clinician],
            ).fetchall()
        ]
    finally:
        conn.close()


def _q(paths, sql: str, params: list | None = None) -> list[tuple]:  # type: ignore[no-untyped-def]
    conn = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return conn.execute(sql, params or []).fetchall()
    finally:
        conn.close()


def _click(paths, episode: str, answer: Answer, clinician: str = "T01",
           when: dt.datetime | None = None) -> str:  # type: ignore[no-untyped-def]  # fmt: skip
    return answers_inbox.append(paths.answers, claim(answer, episode, clinician), when)


def test_answers_load_exactly_once_and_foreign_ones_are_refused_with_a_reason(home) -> None:  # type: ignore[no-untyped-def]
    assert EPISODE in _episodes(home, "T01")
    t02 = _episodes(home, "T02")[0]
    ids = [_click(home, EPISODE, Answer.NOT_YET), _click(home, EPISODE, Answer.TALKED)]
    _click(home, t02, Answer.TALKED, clinician="T01")  # another clinician's client
    _click(home, "ref_clinic:C9999:SRS:3", Answer.TALKED)  # no such episode
    summary = load_answers(home, publish=False)
    assert summary["loaded"] == 2 and summary["refused"] == 2
    assert summary["refused_not_their_client"] == 1 and summary["refused_unknown_episode"] == 1
    assert answers_inbox.pending(home.answers) == []
    rows = _q(home, "select answer_id, client_id, clinician_id, answer from alert_feedback "
                    "order by answered_at")  # fmt: skip
    assert rows == [(ids[0], "C0046", "T01", "rupture_not_yet"),
                    (ids[1], "C0046", "T01", "rupture_talked")]  # fmt: skip
    refused = _q(home, "select alert_episode_id, reason from alert_feedback_refused order by 2")
    # an unknown episode's id is not kept (it may be an erased client's)
    assert refused == [(t02, "not_their_client"), (None, "unknown_episode")]
    # the last answer counts
    assert _q(home, "select answer, answer_count from alert_outcomes where alert_episode_id = ?",
              [EPISODE]) == [("rupture_talked", 2)]  # fmt: skip
    # a second run finds nothing; a run that crashed after its commit (files still there)
    # loads nothing twice
    assert load_answers(home, publish=False)["answers_read"] == 0
    _click(home, EPISODE, Answer.NO_RUPTURE)
    from pipelines.warehouse import open_warehouse

    waiting = answers_inbox.pending(home.answers)
    with open_warehouse(home.warehouse) as conn:
        assert load_into(conn, waiting)["loaded"] == 1
    again = load_answers(home, publish=False)  # the files were not removed: "the crash"
    assert again["loaded"] == 0 and again["already_loaded"] == 1
    assert _q(home, "select count(*) from alert_feedback")[0][0] == 3


def test_alert_outcomes_and_rates_from_known_answers(home) -> None:  # type: ignore[no-untyped-def]
    episodes = _episodes(home)
    assert len(episodes) == 13
    opened = dict(_q(home, "select alert_episode_id, opened_date from alert_episodes"))
    # 12 answered: 9 ruptures (6 talked, 3 not yet), 3 not; one episode unanswered
    plan = [Answer.TALKED] * 6 + [Answer.NOT_YET] * 3 + [Answer.NO_RUPTURE] * 3
    owner = dict(_q(home, "select alert_episode_id, clinician_id from alert_episodes"))
    for e, a in zip(episodes[:12], plan, strict=True):
        when = dt.datetime.combine(opened[e] + dt.timedelta(days=3), dt.time(9), dt.UTC)
        _click(home, e, a, clinician=owner[e], when=when)
    assert load_answers(home, publish=False)["loaded"] == 12
    per_episode = _q(home, "select is_answered, days_to_answer, is_rupture_confirmed, "
                           "is_conversation_held from alert_outcomes order by alert_episode_id")  # fmt: skip
    assert sum(r[0] for r in per_episode) == 12
    assert {r[1] for r in per_episode if r[0]} == {3}
    assert sum(bool(r[2]) for r in per_episode) == 9 and sum(bool(r[3]) for r in per_episode) == 6
    (clinic,) = _q(
        home,
        "select n_alerts, n_answered, n_rupture, answer_rate, confirmed_precision, "
        "precision_low, precision_high, is_suppressed from alert_answer_rates "
        "where grain = 'clinic'",
    )
    lo, hi = wilson(9, 12)
    assert clinic[:3] == (13, 12, 9)
    assert clinic[3] == pytest.approx(12 / 13) and clinic[4] == pytest.approx(0.75)
    assert clinic[5] == pytest.approx(lo) and clinic[6] == pytest.approx(hi)
    assert (round(lo, 3), round(hi, 3)) == (0.468, 0.911)  # Wilson 95% for 9 of 12
    assert clinic[7] is False
    # per clinician: cells under 10 answers are suppressed
    per_clinician = _q(home, "select clinician_id, n_answered, confirmed_precision, is_suppressed "
                             "from alert_answer_rates where grain = 'clinician' order by 1")  # fmt: skip
    assert all(r[2] is None and r[3] for r in per_clinician if r[1] < 10)


def test_calibrate_suggests_a_budget_says_what_it_rests_on_and_changes_nothing(home) -> None:  # type: ignore[no-untyped-def]
    from pipelines.cli import main

    config = home.config_dir / "clinics" / "ref_clinic.yaml"
    before = config.read_bytes()
    for e in _episodes(home)[:11]:
        owner = _q(home, "select clinician_id from alert_episodes where alert_episode_id = ?",
                   [e])[0][0]  # fmt: skip
        _click(home, e, Answer.NO_RUPTURE if e.endswith(":8") else Answer.TALKED, owner)
    load_answers(home, publish=False)
    config.write_text(before.decode() + "thresholds:\n  alert_budget: 0.05\n", encoding="utf-8")
    before = config.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "calibrate", "--clinic", "ref_clinic",
         "--warehouse", str(home.warehouse)],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "alert_budget 0.05 (configured)" in out
    assert "rests on 11 answers" in out and "nothing was changed" in out
    assert re.search(r"suggested alert_budget: 0\.0\d\d", out)
    assert config.read_bytes() == before
    # too few answers: no suggestion
    assert main(["calibrate", "--clinic", "nowhere", "--warehouse", str(home.warehouse)]) == 2
    # the rule itself: a precision whose interval holds one half keeps the budget
    assert suggest_budget(0.05, 6, 12) == 0.05
    assert suggest_budget(0.05, 2, 20) < 0.05 < suggest_budget(0.05, 19, 20) <= 0.10


def test_forget_removes_the_clients_answers_everywhere(home) -> None:  # type: ignore[no-untyped-def]
    from pipelines.erasure import forget

    _click(home, EPISODE, Answer.TALKED)
    load_answers(home, publish=False)
    _click(home, EPISODE, Answer.NOT_YET)  # not loaded yet
    other = _episodes(home, "T02")[0]
    _click(home, other, Answer.TALKED, clinician="T01")
    load_answers(home, publish=False)  # refused: not their client (C2xx)
    _click(home, EPISODE, Answer.NO_RUPTURE)  # waiting in the inbox
    client_of_other = other.split(":")[1]
    r = forget(home.warehouse, "ref_clinic", "C0046", answers=home.answers)
    assert r.answers_inbox_removed == 1 and r.rows_removed["alert_feedback"] == 2
    assert _q(home, "select count(*) from alert_feedback where client_id = 'C0046'") == [(0,)]
    assert answers_inbox.pending(home.answers) == []
    forget(home.warehouse, "ref_clinic", client_of_other, answers=home.answers)
    assert _q(home, "select count(*) from alert_feedback_refused") == [(0,)]


# ------------------------------------------------------------------- digests and notices


def test_the_digest_carries_three_links_and_next_week_shows_the_answer(home) -> None:  # type: ignore[no-untyped-def]
    from pipelines.config import load_clinic_configs
    from pipelines.deliver.digest import (
        Week,
        build_data_team_summary,
        render_clinician_digest,
        render_data_team_summary,
        select_clinician_digests,
    )
    from pipelines.warehouse import connect

    cfg = load_clinic_configs(home.config_dir)[0]["ref_clinic"]
    settings = answer_settings_from_env()
    conn = connect(home.warehouse, read_only=True)
    try:
        first = {d.clinician_id: d for d in select_clinician_digests(
            conn, cfg, Week.before(dt.date(2026, 11, 30)))}  # fmt: skip
    finally:
        conn.close()
    c0046 = next(c for c in first["T01"].flagged if c.client_id == "C0046")
    assert [label for label, _ in c0046.answer_links] == [a.label for a in Answer]
    rendered = render_clinician_digest(first["T01"])
    urls = re.findall(r"http://127\.0\.0\.1:9/answers/a/[A-Za-z0-9_-]+", rendered.text)
    assert len(urls) == 3 * len(first["T01"].flagged)
    for url in urls:
        assert "C0046" not in url and "ref_clinic" not in url
        assert set(
            re.findall(r"http://127\.0\.0\.1:9/answers/a/[A-Za-z0-9_-]+", rendered.html_file)
        ) >= {url}
    token = c0046.answer_links[0][1].rsplit("/", 1)[1]
    assert verify(token, settings.secrets).alert_episode_id == EPISODE
    assert verify(token, settings.secrets).expires == dt.date(2026, 11, 30) + dt.timedelta(days=28)

    # the clinician clicks "we talked about it" on 2 Dec; the next week's digest says so
    _click(home, EPISODE, Answer.TALKED, when=dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC))
    load_answers(home, publish=False)
    conn = connect(home.warehouse, read_only=True)
    try:
        week = Week.before(dt.date(2026, 12, 7))
        second = {d.clinician_id: d for d in select_clinician_digests(conn, cfg, week)}
        team = render_data_team_summary(build_data_team_summary(conn, cfg, week))
    finally:
        conn.close()
    (followup,) = second["T01"].answers
    assert followup.text == (
        "You held a repair conversation with C0046 on 2 Dec; SRS since: 36.1, 37.4 "
        "(still below their usual)"
    )
    page = render_clinician_digest(second["T01"])
    assert "\n  > You held a repair conversation with C0046 on 2 Dec;" in page.text
    assert f"> {followup.text}." in " ".join(page.text.split())
    assert "with <strong>C0046</strong> on 2 Dec" in page.html_file
    assert "1 answered" in page.subject
    assert "Clinicians answered <5 of" in team.text


def test_followup_sentences() -> None:
    d = dt.date(2026, 12, 2)
    assert followup_text("rupture_talked", "C0046", d, "SRS", [36.1, 37.4], "repaired") == (
        "You held a repair conversation with C0046 on 2 Dec; SRS since: 36.1, 37.4 "
        "(back to their usual)"
    )
    assert followup_text("rupture_not_yet", "C7", d, "SRS", [], "ongoing") == (
        "On 2 Dec you marked C7's alert a rupture not talked about yet; no SRS session since yet"
    )
    assert followup_text("not_rupture", "C7", d, "WAI-SR", [3.5], "ended").endswith(
        "WAI-SR since: 3.50 (no longer attending)"
    ) or "no longer attending" in followup_text("not_rupture", "C7", d, "WAI-SR", [3.5], "ended")


def test_the_immediate_notice_carries_the_three_links() -> None:
    from pipelines.deliver.alerts import high_severity_message

    s = AnswerSettings(secrets=(SECRET,), base_url="http://127.0.0.1:9/answers")
    ep = {"alert_episode_id": EPISODE, "client_id": "C0046", "clinician_id": "T01",
          "instrument": "SRS", "opened_session": 8}  # fmt: skip
    text = str(high_severity_message("ref_clinic", [ep], "a@b", "t01@c", s).get_content())
    urls = re.findall(r"http://127\.0\.0\.1:9/answers/a/([A-Za-z0-9_-]+)", text)
    assert [verify(u, (SECRET,)).answer for u in urls] == list(Answer)
    for label in (
        "A rupture: we talked about it",
        "A rupture: not talked about yet",
        "Not a rupture",
    ):
        assert label in text
    # without answer settings the notice is as before
    assert "/answers/" not in str(
        high_severity_message("ref_clinic", [ep], "a@b", "t01@c").get_content()
    )
    assert links_for(AnswerSettings((), None), EPISODE, "T01", FAR) == ()
    assert answer_links(EPISODE, "T01", FAR, SECRET, "http://x")[0][0] == Answer.TALKED.label


def test_the_report_shows_answer_rate_and_precision(home) -> None:  # type: ignore[no-untyped-def]
    from pipelines.deliver.report import render_report

    owner = dict(_q(home, "select alert_episode_id, clinician_id from alert_episodes"))
    plan = [Answer.TALKED] * 6 + [Answer.NOT_YET] * 3 + [Answer.NO_RUPTURE] * 3
    for e, a in zip(_episodes(home)[:12], plan, strict=True):
        _click(home, e, a, clinician=owner[e])
    load_answers(home, publish=False)
    html = render_report(home.warehouse)
    assert "Clinicians&#39; answers to the alerts" in html or "Clinicians' answers" in html
    assert "92%" in html  # 12 of 13 alerts answered
    assert "0.75 (0.47 to 0.91)" in html


# ------------------------------------------------------------------------------- DuckLake

from tests.e2e import test_ducklake  # noqa: E402 - its throwaway-lake fixture, shared

lake = test_ducklake.lake


def test_answers_load_exactly_once_on_a_ducklake_warehouse(
    lake: tuple[str, Path], tmp_path: Path
) -> None:
    """The same load on the production backend (catalog in PostgreSQL, migration 019's
    DuckLake twin): one transaction, refusals recorded, nothing loaded twice."""
    from pipelines.warehouse import lake as ducklake

    catalog, data = lake
    answers = tmp_path / "answers"
    with ducklake.open_warehouse(catalog, data) as conn:
        conn.execute(
            "insert into alert_episodes (alert_episode_id, clinic_id, client_id, clinician_id, "
            "instrument, opened_session, opened_date, last_flag_session, max_severity, status, "
            "episode_id) values (?, 'ref_clinic', 'C0046', 'T01', 'SRS', 8, date '2026-11-25', "
            "8, 'high', 'ongoing', '')",
            [EPISODE],
        )
        answers_inbox.append(answers, claim(Answer.TALKED))
        answers_inbox.append(answers, claim(Answer.NOT_YET, clinician="T02"))
        waiting = answers_inbox.pending(answers)
        first = load_into(conn, waiting)
        assert (first["loaded"], first["refused_not_their_client"]) == (1, 1)
        again = load_into(conn, waiting)  # a crash before the files were removed
        assert (again["loaded"], again["refused"], again["already_loaded"]) == (0, 0, 2)
        assert conn.execute(
            "select client_id, clinician_id, answer from alert_feedback"
        ).fetchall() == [("C0046", "T01", "rupture_talked")]
        assert conn.execute(
            "select answer, answer_count from alert_outcomes where alert_episode_id = ?",
            [EPISODE],
        ).fetchall() == [("rupture_talked", 1)]
