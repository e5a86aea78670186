"""`alliance-watch forget`: nothing of the client remains anywhere (any value of any relation,
the file's bytes, the snapshots), everyone else is untouched, and the audit holds no code."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.erasure import forget
from pipelines.errors import AllianceWatchError
from pipelines.ingest import ingest_all
from pipelines.warehouse import open_warehouse, publish_snapshot
from tests.conftest import build_detected_warehouse

ROOT = Path(__file__).resolve().parents[1]


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
    snap = publish_snapshot(wh, root / "snap" / "alliance.duckdb", per_clinic=True)
    before = dict(every_value_mentioning(wh, client))
    for table in ("measurements", "measurements_superseded", "flags", "alert_episodes"):
        assert table in before, table
    assert "quarantined_rows" in before and "loads" in before
    assert client.encode() in wh.read_bytes()  # so its absence afterwards means something
    with duckdb.connect(str(wh), read_only=True) as conn:
        others_before = conn.execute(
            "select count(*) from measurements where client_id <> ?", [client]
        ).fetchone()

    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "forget", "--warehouse", str(wh)]
        + ["--clinic", clinic, "--client", client, "--note", "ticket 481", "--snapshot", str(snap)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert client not in done.stdout + done.stderr

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
