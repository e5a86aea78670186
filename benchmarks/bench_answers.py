"""Benchmark clinicians' answers (issue 19): the endpoint and the load.

1. Clicks: the answer app served by uvicorn (its own process) on 127.0.0.1, `--clicks` GETs of
   valid links from `--clients` concurrent HTTP clients; clicks/s, and the server's peak RSS.
   Each click is one fsynced file in the answers inbox.
2. Load: `--answers` answers waiting in the inbox for episodes of a warehouse with `--episodes`
   alert episodes; `load_answers` (read the inbox, judge, insert, remove the files) in rows/s,
   against a raw DuckDB insert of the same rows from one in-memory DataFrame, and peak RSS.

    .venv/bin/python -m benchmarks.bench_answers [--clicks 5000] [--clients 20]
        [--answers 20000] [--episodes 20000] [--out benchmarks/results/answers.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_clicks(n: int, clients: int, tmp: Path) -> dict:
    import httpx

    from pipelines.answers.tokens import Answer, AnswerClaim, sign

    port = _free_port()
    answers = tmp / "answers-clicks"
    env = {
        **os.environ,
        "ALLIANCE_WATCH_ANSWER_SECRET": SECRET,
        "ALLIANCE_WATCH_ANSWERS": str(answers),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "pipelines.answers.app:create_app"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        expires = dt.date.today() + dt.timedelta(days=28)
        urls = [
            f"http://127.0.0.1:{port}/a/"
            + sign(
                AnswerClaim(
                    f"c:C{i % 997:04d}:SRS:{i % 9 + 1}",
                    f"T{i % 50:02d}",
                    list(Answer)[i % 3],
                    expires,
                ),  # fmt: skip
                SECRET.encode(),
            )
            for i in range(n)
        ]
        codes: list[int] = []
        lock = threading.Lock()

        def client(share: list[str]) -> None:
            with httpx.Client(timeout=60) as c:
                got = [c.get(u).status_code for u in share]
            with lock:
                codes.extend(got)

        threads = [
            threading.Thread(target=client, args=(urls[i::clients],)) for i in range(clients)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        secs = time.perf_counter() - t0
        files = len(list((answers / "new").glob("*.json")))
        return {
            "clicks": n,
            "clients": clients,
            "seconds": round(secs, 2),
            "clicks_per_s": round(n / secs),
            "ok": codes.count(200),
            "answers_in_inbox": files,
            "server_peak_rss_mb": round(_rss_mb(proc.pid), 1),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _warehouse(path: Path, episodes: int) -> list[tuple[str, str]]:
    """A migrated warehouse holding `episodes` alert episodes (one flag each); returns
    (episode id, clinician) pairs."""
    from pipelines.warehouse import open_warehouse

    ids = [f"bench:C{i:06d}:SRS:5" for i in range(episodes)]
    clin = [f"T{i % 200:03d}" for i in range(episodes)]
    eps = pd.DataFrame(
        {
            "alert_episode_id": ids,
            "clinic_id": "bench",
            "client_id": [f"C{i:06d}" for i in range(episodes)],
            "clinician_id": clin,
            "instrument": "SRS",
            "opened_session": 5,
            "opened_date": dt.date(2026, 11, 2),
            "last_flag_session": 5,
            "max_severity": "high",
            "status": np.where(np.arange(episodes) % 2 == 0, "repaired", "ongoing"),
            "closed_session": 6,
            "closed_date": dt.date(2026, 11, 9),
            "episode_id": "",
        }
    )
    with open_warehouse(path) as conn:
        conn.register("eps", eps)
        conn.execute("insert into alert_episodes by name select * from eps")
        conn.execute(
            """
            insert into flags by name
            select clinic_id, client_id, clinician_id, 5 as session_number,
                   opened_date as session_date, 'SRS' as instrument, 'high' as severity,
                   ['below_cutoff'] as reasons, alert_episode_id, true as is_new
            from eps
            """
        )
        conn.unregister("eps")
    return list(zip(ids, clin, strict=True))


def bench_load(n: int, episodes: int, tmp: Path) -> dict:
    from pipelines.answers import inbox as answers_inbox
    from pipelines.answers.load import load_answers
    from pipelines.answers.tokens import Answer, AnswerClaim
    from pipelines.settings import paths_from_env

    os.environ["ALLIANCE_WATCH_HOME"] = str(tmp / "home")
    paths = paths_from_env().ensure()
    pairs = _warehouse(paths.warehouse, episodes)
    far = dt.date(2099, 1, 1)
    from concurrent.futures import ThreadPoolExecutor

    def click(i: int) -> str:
        e, c = pairs[i % len(pairs)]
        return answers_inbox.append(paths.answers, AnswerClaim(e, c, list(Answer)[i % 3], far))

    # the endpoint's own writes, 20 at once as its worker threads do them
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(click, range(n)))
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = load_answers(paths, publish=False)
    load_s = time.perf_counter() - t0
    assert summary["loaded"] == n, summary
    # raw DuckDB: the same rows, already in memory, in one INSERT into a copy of the table
    rows = pd.DataFrame(
        {
            "answer_id": [f"{i:032x}" for i in range(n)],
            "alert_episode_id": [pairs[i % len(pairs)][0] for i in range(n)],
            "clinic_id": "bench",
            "client_id": [pairs[i % len(pairs)][0].split(":")[1] for i in range(n)],
            "clinician_id": [pairs[i % len(pairs)][1] for i in range(n)],
            "answer": [list(Answer)[i % 3].value for i in range(n)],
            "answered_at": pd.Timestamp.now(tz="UTC"),
            "loaded_at": pd.Timestamp.now(tz="UTC"),
        }
    )
    raw = duckdb.connect(str(tmp / "raw.duckdb"))
    raw.register("rows", rows)
    raw.execute("create table t as select * from rows limit 0")
    t0 = time.perf_counter()
    raw.execute("insert into t select * from rows")
    raw_s = time.perf_counter() - t0
    raw.close()
    return {
        "answers": n,
        "episodes": episodes,
        "inbox_write_s": round(write_s, 2),
        "inbox_writes_per_s_20_threads": round(n / write_s),
        "load_s": round(load_s, 2),
        "load_rows_per_s": round(n / load_s),
        "raw_duckdb_insert_s": round(raw_s, 3),
        "ratio_to_raw": round(load_s / raw_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--answers", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as d:
        tmp = Path(d)
        result = {
            "clicks": bench_clicks(args.clicks, args.clients, tmp),
            "load": bench_load(args.answers, args.episodes, tmp),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
