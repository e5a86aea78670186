"""Benchmark the Monday digest run at network scale: 10 clinics x 250 clinicians (2,500 digests
by default), rendered from a detected warehouse to an outbox, optionally sent to a local SMTP
server (aiosmtpd on 127.0.0.1), and a rerun that must send nothing again.

Data is generated with vectorized numpy straight into a DuckDB file (8 clients a clinician,
12 weekly sessions each with SRS and PHQ-9, a fifth of clients with a rupture, every client's
last session in the digest week), then `detect` runs over it, so the digests carry the real
flags, evidence sentences, charts and guidance. Every clinic sends all-clear digests, so every
clinician gets one.

    .venv/bin/python -m benchmarks.bench_digest [--clinics 10] [--clinicians 250] [--smtp]
        [--workers N] [--out benchmarks/results/digest.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AS_OF = dt.date(2026, 6, 1)  # a Monday: the digest covers 2026-05-25 .. 2026-05-31
SESSIONS = 12
CLIENTS_PER_CLINICIAN = 8


def write_configs(config_dir: Path, clinics: int, clinicians: int) -> None:
    """One reference-format clinic config per clinic, every clinician with an address."""
    folder = config_dir / "clinics"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(clinics):
        clinic = f"clinic_{k:02d}"
        lines = [
            f"clinic_id: {clinic}",
            "timezone: Europe/Berlin",
            "format: reference",
            "notifications:",
            f"  data_team_email: data@{clinic}.invalid",
            "  send_all_clear: true",
            "clinicians:",
            *(f"  T{t:03d}: t{t:03d}@{clinic}.invalid" for t in range(clinicians)),
        ]
        (folder / f"{clinic}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate(conn: object, clinics: int, clinicians: int, seed: int = 11) -> tuple[int, int]:
    """Insert the measurements; return (clients, measurement rows)."""
    rng = np.random.default_rng(seed)
    n_clients = clinics * clinicians * CLIENTS_PER_CLINICIAN
    client = np.arange(n_clients)
    clinic = client // (clinicians * CLIENTS_PER_CLINICIAN)
    clinician = (client // CLIENTS_PER_CLINICIAN) % clinicians
    ci = np.repeat(client, SESSIONS)
    si = np.tile(np.arange(1, SESSIONS + 1), n_clients)
    # the last session of every client falls in the digest week (AS_OF-7 .. AS_OF-1)
    last = np.datetime64(AS_OF) - rng.integers(1, 8, n_clients).astype("timedelta64[D]")
    date = last[ci] - ((SESSIONS - si) * 7).astype("timedelta64[D]")
    level = np.clip(rng.normal(9.2, 0.5, n_clients), 6, 10)[ci]
    onset = rng.integers(SESSIONS - 3, SESSIONS + 1, n_clients)[ci]
    rupture = (rng.random(n_clients) < 0.2)[ci] & (si >= onset)
    srs = level[:, None] + rng.normal(0, 0.3, (len(ci), 4)) - rupture[:, None] * [2.8, 1, 1, 1.5]
    srs = np.round(np.clip(srs, 0, 10), 1)
    phq = np.clip(rng.normal(1.4, 0.6, (len(ci), 9)) + rupture[:, None] * 0.8, 0, 3).round()
    base = {
        "clinic_no": clinic[ci].astype(np.int32),
        "clinician_no": clinician[ci].astype(np.int32),
        "client_no": ci.astype(np.int64),
        "session_number": si.astype(np.int32),
        "session_date": date,
    }
    for code, items in (("SRS", srs), ("PHQ-9", phq)):
        df = pd.DataFrame(base)
        for j in range(items.shape[1]):
            df[f"item_{j + 1}"] = items[:, j]
        df["total"] = np.round(items.sum(axis=1), 1)
        cols = ", ".join(f"item_{j + 1}" for j in range(items.shape[1]))
        conn.register("bench_in", df)  # type: ignore[attr-defined]
        conn.execute(  # type: ignore[attr-defined]
            "insert into measurements by name select "  # noqa: S608
            "'clinic_' || lpad(clinic_no::varchar, 2, '0') as clinic_id, "
            "'c' || client_no as client_id, "
            "'T' || lpad(clinician_no::varchar, 3, '0') as clinician_id, "
            f"session_number, session_date, '{code}' as instrument, "
            f"'1.0' as instrument_version, {cols}, total, 'bench' as source_file, "
            "session_number as source_line, 'bench' as sha256, 0 as load_id from bench_in"
        )
        conn.unregister("bench_in")  # type: ignore[attr-defined]
    return n_clients, 2 * len(ci)


def build(root: Path, clinics: int, clinicians: int) -> tuple[Path, Path, dict[str, object]]:
    """A detected warehouse and its configs under `root`; returns (warehouse, config, facts)."""
    from pipelines.detect.ruptures import detect
    from pipelines.warehouse import open_warehouse

    config_dir = root / "config"
    write_configs(config_dir, clinics, clinicians)
    wh = root / "warehouse.duckdb"
    t = time.perf_counter()
    with open_warehouse(wh) as conn:
        n_clients, n_rows = generate(conn, clinics, clinicians)
        summary = detect(conn)
        week_flags = conn.execute(
            "select count(*), count(distinct (clinic_id, client_id)) from flags "
            "where session_date >= ? and session_date < ?",
            [AS_OF - dt.timedelta(days=7), AS_OF],
        ).fetchone()
        conn.execute("checkpoint")
    assert week_flags is not None
    facts = {
        "clinics": clinics,
        "clinicians": clinics * clinicians,
        "clients": n_clients,
        "measurement_rows": n_rows,
        "flags": summary.flags,
        "flags_in_week": int(week_flags[0]),
        "clients_flagged_in_week": int(week_flags[1]),
        "build_seconds": round(time.perf_counter() - t, 1),
    }
    return wh, config_dir, facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clinics", type=int, default=10)
    ap.add_argument("--clinicians", type=int, default=250, help="per clinic")
    ap.add_argument("--smtp", action="store_true", help="send to aiosmtpd on 127.0.0.1")
    ap.add_argument("--workers", type=int, default=None, help="ALLIANCE_WATCH_DIGEST_WORKERS")
    ap.add_argument("--keep", type=Path, default=None, help="build here and keep it")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "digest.json"
    )
    args = ap.parse_args()
    if args.workers is not None:
        os.environ["ALLIANCE_WATCH_DIGEST_WORKERS"] = str(args.workers)
    from pipelines.deliver.digest import run_weekly_digest
    from pipelines.deliver.mailer import SmtpSettings

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_digest_"))
    root.mkdir(parents=True, exist_ok=True)
    controller = None
    received: list[bytes] = []
    try:
        wh, config_dir, facts = build(root, args.clinics, args.clinicians)
        print(f"built {facts}")
        smtp = None
        if args.smtp:
            from aiosmtpd.controller import Controller

            class Handler:
                async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
                    received.append(envelope.content)
                    return "250 OK"

            import socket

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            controller = Controller(Handler(), hostname="127.0.0.1", port=port)
            controller.start()
            smtp = SmtpSettings(host="127.0.0.1", port=port, starttls=False)
        outbox = root / "outbox"
        load = os.getloadavg()
        t = time.perf_counter()
        first = run_weekly_digest(wh, config_dir, AS_OF, outbox, smtp)
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        again = run_weekly_digest(wh, config_dir, AS_OF, outbox, smtp)
        rerun_seconds = time.perf_counter() - t
        n_clin = first.as_dict()["clinician_digests"]
        result = {
            **facts,
            "as_of": AS_OF.isoformat(),
            "smtp": bool(args.smtp),
            "workers": os.environ.get("ALLIANCE_WATCH_DIGEST_WORKERS", "default"),
            "cpu_count": os.cpu_count(),
            "clinician_digests": n_clin,
            "data_team_summaries": first.as_dict()["data_team_summaries"],
            "sent": first.sent,
            "written": first.written,
            "failed": first.failed,
            "messages_received": len(received),
            "seconds": round(seconds, 1),
            "ms_per_digest": round(1000 * seconds / max(1, len(first.deliveries)), 1),
            "rerun_seconds": round(rerun_seconds, 1),
            "rerun_already_sent": again.already_sent,
            "rerun_sent": again.sent,
            "load_average_1_5_15_before": [round(x, 2) for x in load],
        }
        print(json.dumps(result, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"written {args.out}")
    finally:
        if controller is not None:
            controller.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
