"""`alliance-watch forget`: nothing of the client remains anywhere (any value of any relation,
the file's bytes, the snapshots), everyone else is untouched, and the audit holds no code."""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.erasure import forget
from pipelines.errors import AllianceWatchError
from pipelines.ingest.run import ingest_all
from pipelines.warehouse import open_warehouse, publish_snapshot
from tests.conftest import build_detected_warehouse

ROOT = Path(__file__).resolve().parents[2]


def every_value_mentioning(db: Path, code: str) -> list[tuple[str, str]]:
    """(relation, column) of every cell of every base table whose text contains `code`."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        hits = []
        tables = conn.execute(
            "select table_name from information_schema.tables where table_type = 'BASE TABLE'"
        ).fetchall()
        for (t,) in tables:
            cols = conn.execute(f"select column_name from (describe {t})").fetchall()  # noqa: S608
            for (c,) in cols:
                n = conn.execute(
                    f'select count(*) from {t} where contains(cast("{c}" as varchar), ?)',  # noqa: S608
                    [code],
                ).fetchone()
                if n and n[0]:
                    hits.append((t, c))
        return hits
    finally:
        conn.close()


@pytest.fixture(scope="module")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A generated clinic, ingested and detected, plus a delivery whose rows for the most
    flagged client are quarantined (bad dates), so the client is in every relation."""
    root = tmp_path_factory.mktemp("erasure")
    wh = build_detected_warehouse(root, seed=3, clinics=1)
    with open_warehouse(wh) as conn:
        clinic, client = conn.execute(
            "select clinic_id, client_id from flags group by all order by count(*) desc, 2 limit 1"
        ).fetchone()
    src = next((root / "landing" / clinic).glob("*sessions*.csv"))
    lines = src.read_text().splitlines()
    mine = [re.sub(r"\d\d/\d\d/\d{4}", "99/99/2026", ln) for ln in lines if f'"{client}"' in ln]
    (src.parent / src.name.replace("_all", "_fix")).write_text("\n".join([lines[0], *mine]) + "\n")
    # and a correction of the client's first SRS, so a superseded version of it is kept too
    first = next(csv.reader([ln for ln in lines if f'"{client}"' in ln][:1]))
    srs = [float(v) for v in first[4:8]]
    srs[3] = 1.0 if srs[3] != 1.0 else 2.0
    first[7], first[8] = f"{srs[3]:g}", f"{round(sum(srs), 1):g}"
    corrected = ",".join(f'"{v}"' for v in first)
    (src.parent / src.name.replace("_all", "_corr")).write_text(f"{lines[0]}\n{corrected}\n")
    ingest_all(root / "config", root / "landing", wh)
    return {"root": root, "wh": wh, "clinic": clinic, "client": client}


def test_forget_removes_every_trace(landscape: dict[str, object]) -> None:
    root, wh = Path(str(landscape["root"])), Path(str(landscape["wh"]))
    clinic, client = str(landscape["clinic"]), str(landscape["client"])
    # the snapshot where ALLIANCE_WATCH_HOME puts it: forget republishes it unasked
    snap = publish_snapshot(
        wh, root / "warehouse" / "snapshot" / "alliance_snapshot.duckdb", per_clinic=True
    )
    before = dict(every_value_mentioning(wh, client))
    for table in ("measurements", "measurements_superseded", "flags", "alert_episodes"):
        assert table in before, table
    assert "quarantined_rows" in before and "loads" in before
    assert "detection_pending" in before  # the correction queued the client for detection
    assert client.encode() in wh.read_bytes()  # so its absence afterwards means something
    with duckdb.connect(str(wh), read_only=True) as conn:
        others_before = conn.execute(
            "select count(*) from measurements where client_id <> ?", [client]
        ).fetchone()

    # the immediate-notice ledger (`pipelines.deliver.alerts`) holds the episodes already announced
    with duckdb.connect(str(wh), read_only=True) as conn:
        episodes = [
            e for (e,) in conn.sql("select alert_episode_id from alert_episodes").fetchall()
        ]
        mine = {
            e
            for (e,) in conn.execute(
                "select alert_episode_id from alert_episodes where client_id = ?", [client]
            ).fetchall()
        }
    assert mine and set(episodes) - mine
    ledger = root / "notices" / f"{clinic}.immediate.json"
    ledger.parent.mkdir(exist_ok=True)
    ledger.write_text(json.dumps(sorted(episodes)), encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "forget", "--warehouse", str(wh)]
        + ["--clinic", clinic, "--client", client, "--note", "ticket 481"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # the installation's own warehouse: its home's snapshot and ledger go with it
        env={**os.environ, "ALLIANCE_WATCH_HOME": str(root), "ALLIANCE_WATCH_WAREHOUSE": str(wh)},
    )
    assert done.returncode == 0, done.stderr
    assert client not in done.stdout + done.stderr
    assert client not in ledger.read_text(encoding="utf-8")
    assert set(json.loads(ledger.read_text(encoding="utf-8"))) == set(episodes) - mine
    assert f"{len(mine)} announced episodes of the client removed" in done.stdout, done.stdout

    for db in (wh, snap, snap.parent / "clinics" / f"{clinic}.duckdb"):
        assert every_value_mentioning(db, client) == [], db
        assert client.encode() not in db.read_bytes(), db
    with duckdb.connect(str(wh), read_only=True) as conn:
        assert (
            conn.execute(
                "select count(*) from measurements where client_id <> ?", [client]
            ).fetchone()
            == others_before
        )
        clinic_id, removed, note = conn.execute(
            "select clinic_id, rows_removed, operator_note from erasures"
        ).fetchone()
        assert (clinic_id, note) == (clinic, "ticket 481")
        assert '"measurements"' in removed and client not in removed


def test_a_note_naming_the_client_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AllianceWatchError, match="must not contain the client code"):
        forget(tmp_path / "wh.duckdb", "c", "K77", operator_note="asked by K77")


def _outbox_texts(path: Path) -> str:
    """What a reader of one outbox file sees: the text, the HTML, or every text part of the
    email decoded (its parts may be quoted-printable or base64)."""
    if path.suffix != ".eml":
        return path.read_text(encoding="utf-8")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    parts = [str(msg["Subject"])]
    parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
    return "\n".join(parts)


def _names(text: str, code: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", text) is not None


def test_forget_renders_the_clients_digests_in_the_outbox_again_without_them(
    tmp_path: Path,
) -> None:
    """A digest already written to the outbox names the client: after `forget` no outbox file
    names it, the clinician's digest still holds their other clients (same Message-ID as the
    ledger), and a digest left with nobody to report is removed."""
    from pipelines.deliver.digest import run_weekly_digest

    wh = build_detected_warehouse(tmp_path, seed=4, clinics=1)
    with duckdb.connect(str(wh), read_only=True) as conn:
        # the week (Monday start) with the most flagged clients
        clinic, start = conn.execute(
            "select clinic_id, date_trunc('week', session_date)::date as wk from flags "
            "group by all order by count(distinct client_id) desc, wk limit 1"
        ).fetchone()
    outbox = tmp_path / "outbox"
    as_of = start + dt.timedelta(days=7)
    run_weekly_digest(wh, tmp_path / "config", as_of, outbox)
    week_dir = outbox / clinic / start.isoformat()
    codes = {
        p.stem: sorted(set(re.findall(r"\bC\d{4}\b", p.read_text(encoding="utf-8"))))
        for p in week_dir.glob("*.txt")
    }
    stem, named = max(codes.items(), key=lambda kv: (len(kv[1]), kv[0]))
    assert len(named) >= 2, codes  # a digest with two clients: one goes, one stays
    client, other = named[0], named[1]
    message_id = email.message_from_bytes((week_dir / f"{stem}.eml").read_bytes())["Message-ID"]
    assert _names(_outbox_texts(week_dir / f"{stem}.eml"), client)

    def forget_cli(code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "forget", "--warehouse", str(wh)]
            + ["--clinic", clinic, "--client", code, "--outbox", str(outbox)]
            + ["--config-dir", str(tmp_path / "config")],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        # the output names the outbox folder, whose temporary path may hold any digit (a
        # short code like "7" was found in "pytest-75"): the code must not appear elsewhere
        said = (done.stdout + done.stderr).replace(str(tmp_path), "<tmp>")
        assert code not in said, said
        return done.stdout

    # an interrupted earlier write left a temporary copy naming the client
    leftover = week_dir / ".T99.txt.tmp"  # a killed run's write, never renamed
    leftover.write_bytes((week_dir / f"{stem}.txt").read_bytes())

    out = forget_cli(client)
    assert "1 rendered again without them, 0 removed" in out, out
    assert not leftover.exists()
    for p in outbox.rglob("*.*"):
        assert not _names(_outbox_texts(p), client), p
    kept = _outbox_texts(week_dir / f"{stem}.txt")
    assert _names(kept, other)
    for suffix in (".html", ".eml"):
        assert _names(_outbox_texts(week_dir / f"{stem}{suffix}"), other)
    eml = email.message_from_bytes((week_dir / f"{stem}.eml").read_bytes())
    assert eml["Message-ID"] == message_id
    with duckdb.connect(str(wh), read_only=True) as conn:
        assert conn.execute(
            "select count(*) from digest_deliveries where message_id = ?", [message_id]
        ).fetchone() == (1,)

    # a short code that is also a number in the digests (a session, a score) names nobody
    number = re.findall(r"session (\d+)", kept)[0]
    files = {p: p.read_bytes() for p in outbox.rglob("*") if p.is_file()}
    assert "0 rendered again without them, 0 removed" in forget_cli(number)
    assert {p: p.read_bytes() for p in outbox.rglob("*") if p.is_file()} == files

    # erase everyone else that digest named: nothing of them stays either, and a digest with
    # nobody left to report is removed (or, where the clinic asks for all-clear digests,
    # rendered as one)
    outs = [forget_cli(code) for code in named[1:]]
    if (week_dir / f"{stem}.txt").exists():  # the clinic wants all-clear digests
        assert "1 rendered again without them, 0 removed" in outs[-1], outs[-1]
    else:
        assert "0 rendered again without them, 1 removed" in outs[-1], outs[-1]
        assert not [p for p in week_dir.iterdir() if p.stem == stem]
    for p in outbox.rglob("*.*"):
        for code in named:
            assert not _names(_outbox_texts(p), code), (p, code)


def test_without_the_clinics_config_the_digests_naming_the_client_are_removed(
    tmp_path: Path,
) -> None:
    """No config to render a digest again with: rather than keep the client, the digest's files
    go; digests that never named the client stay as they were."""
    from pipelines.deliver.digest import run_weekly_digest

    wh = build_detected_warehouse(tmp_path, seed=4, clinics=1)
    with duckdb.connect(str(wh), read_only=True) as conn:
        clinic, client, day = conn.execute(
            "select clinic_id, client_id, session_date from flags order by all limit 1"
        ).fetchone()
    start = day - dt.timedelta(days=day.weekday())
    outbox = tmp_path / "outbox"
    run_weekly_digest(wh, tmp_path / "config", start + dt.timedelta(days=7), outbox)
    week_dir = outbox / clinic / start.isoformat()
    before = {p.name: p.read_bytes() for p in week_dir.iterdir()}
    naming = {p.stem for p in week_dir.glob("*.txt") if _names(p.read_text(), client)}
    assert naming and len(naming) < len({p.stem for p in week_dir.iterdir()})

    r = forget(wh, clinic, client, outbox=outbox, config_dir=None)

    assert (r.outbox_rendered_again, r.outbox_removed) == (0, len(naming))
    after = {p.name: p.read_bytes() for p in week_dir.iterdir()}
    assert after == {k: v for k, v in before.items() if Path(k).stem not in naming}


def test_forget_republishes_the_snapshot_of_the_warehouse_it_was_given(tmp_path: Path) -> None:
    """`forget --warehouse X` with ALLIANCE_WATCH_HOME pointing at another installation: the
    home's snapshot (another warehouse's rows) is left alone; the snapshot beside X is the
    one republished."""
    home = tmp_path / "home"
    home_wh = home / "warehouse" / "alliance.duckdb"
    home_wh.parent.mkdir(parents=True)
    with open_warehouse(home_wh) as conn:
        conn.execute("create table home_marker as select 1 as x")
    home_snap = publish_snapshot(
        home_wh, home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"
    )
    home_bytes, home_stamp = home_snap.read_bytes(), home_snap.stat().st_mtime_ns

    other = tmp_path / "other" / "wh.duckdb"
    other.parent.mkdir()
    with open_warehouse(other) as conn:
        conn.execute("create table other_marker as select 2 as x")
    other_snap = publish_snapshot(other, other.parent / "snapshot" / "alliance_snapshot.duckdb")
    with open_warehouse(other) as conn:
        conn.execute("create table after_publish as select 3 as x")

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_WATCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "forget", "--warehouse", str(other)]
        + ["--clinic", "c1", "--client", "K77"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "ALLIANCE_WATCH_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    assert home_snap.stat().st_mtime_ns == home_stamp
    assert home_snap.read_bytes() == home_bytes
    with duckdb.connect(str(other_snap), read_only=True) as conn:
        tables = {t for (t,) in conn.execute("select table_name from duckdb_tables()").fetchall()}
    assert "after_publish" in tables and "home_marker" not in tables
