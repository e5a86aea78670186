"""A weekly digest run: every clinic's digests selected, rendered, written to the outbox, sent
once and journaled, clinics in parallel; then the journals recorded in the warehouse ledger."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace as dc_replace
from pathlib import Path

from pipelines import settings
from pipelines.config import ClinicConfig, load_clinic_configs
from pipelines.deliver.deliveries import Entry, Journal, ledger_state, merge, read_journals, record
from pipelines.deliver.digest.model import DATA_TEAM, Delivery, DigestRunSummary, Rendered, Week
from pipelines.deliver.digest.outbox import file_stem, write_outbox
from pipelines.deliver.digest.render import render_clinician_digest, render_data_team_summary
from pipelines.deliver.digest.select import build_data_team_summary, select_clinician_digests
from pipelines.deliver.mailer import DEFAULT_SENDER, SmtpSettings, send


def _deliver(
    journal: Journal,
    ledger: dict[tuple[str, str, dt.date, str], Entry],
    key: tuple[str, str, dt.date, str],
    rendered: Rendered,
    recipient: str | None,
    folder: Path,
    stem: str,
    smtp: SmtpSettings | None,
    n_clients: int,
) -> Delivery:
    clinic_id, clinician_id, week_start, kind = key
    previous = merge(ledger.get(key), journal.get(key))
    if previous is not None and previous.status == "sent":
        return Delivery(
            clinic_id, clinician_id, kind, "already_sent", previous.attempts, None, n_clients
        )
    sender = smtp.sender if smtp else DEFAULT_SENDER
    msg = write_outbox(folder, stem, rendered, sender, recipient)
    entry = Entry(
        *key,
        status="written",
        attempts=previous.attempts if previous else 0,
        message_id=str(msg["Message-ID"]),
        outbox_path=str(folder / f"{stem}.eml"),
        n_clients=n_clients,
    )
    if smtp is not None and recipient:
        # journaled before sending: a crash between the send and the journal write leaves a
        # 'failed: interrupted' entry that the next run retries (at least once), never no trace
        journal.append(
            dc_replace(entry, status="failed", attempts=entry.attempts + 1, error="interrupted")
        )
        result = send(smtp, msg, [recipient])
        entry = dc_replace(
            entry,
            status="sent" if result.ok else "failed",
            attempts=entry.attempts + result.attempts,
            error=result.error,
            sent_at=dt.datetime.now(dt.UTC) if result.ok else None,
        )
    journal.append(entry)
    return Delivery(
        clinic_id,
        clinician_id,
        kind,
        entry.status,
        entry.attempts,
        folder / f"{stem}.html",
        n_clients,
        entry.error,
    )


def deliver_clinic(
    source: Path, cfg: ClinicConfig, week: Week, out_dir: Path, smtp: SmtpSettings | None
) -> list[Delivery]:
    """Every digest of one clinic's week: selected from `source` (read-only: the analyst
    snapshot, the warehouse, or the lake) with one query per relation for the whole clinic,
    then rendered, written, sent and journaled (`pipelines.deliver.deliveries`) with the source closed.
    The week's journal is locked meanwhile, so a second run of the same week waits and then
    finds every digest this one sent."""
    from pipelines import warehouse as wh

    folder = out_dir / cfg.clinic_id / week.start.isoformat()
    with Journal(folder) as journal:
        conn = wh.connect(source, read_only=True)
        try:
            ledger = ledger_state(conn, cfg.clinic_id, week.start)
            # a rerun draws nothing for the digests already sent (the charts are the cost)
            sent = {
                key: state
                for key in {*ledger, *journal.entries}
                if key[3] == "clinician"
                and (state := merge(ledger.get(key), journal.get(key))) is not None
                and state.status == "sent"
            }
            digests = select_clinician_digests(
                conn, cfg, week, skip=frozenset(key[1] for key in sent)
            )
            team = build_data_team_summary(conn, cfg, week)
        finally:
            conn.close()
        out = [
            Delivery(cfg.clinic_id, k[1], k[3], "already_sent", e.attempts, None, e.n_clients)
            for k, e in sorted(sent.items())
        ]
        out += [
            _deliver(
                journal,
                ledger,
                (cfg.clinic_id, digest.clinician_id, week.start, "clinician"),
                render_clinician_digest(digest),
                cfg.clinicians.get(digest.clinician_id),
                folder,
                file_stem(digest.clinician_id),
                smtp,
                len(digest.flagged) + len(digest.repaired),
            )
            for digest in digests
        ]
        out.append(
            _deliver(
                journal,
                ledger,
                (cfg.clinic_id, DATA_TEAM, week.start, "data_team"),
                render_data_team_summary(team),
                cfg.notifications.data_team_email,
                folder,
                "_data_team",
                smtp,
                0,
            )
        )
    return out


def digest_workers(n_clinics: int) -> int:
    """Processes rendering clinics at once: env ALLIANCE_WATCH_DIGEST_WORKERS, else one per
    core; never more than there are clinics."""
    wanted = settings.workers_wanted("DIGEST_WORKERS") or os.cpu_count() or 1
    return max(1, min(wanted, n_clinics))


def record_deliveries(
    warehouse: Path,
    out_dir: Path,
    week_start: dt.date,
    clinic_ids: Sequence[str] | None = None,
) -> int:
    """Mirror the week's delivery journals into the warehouse ledger `digest_deliveries` (one
    short writer transaction); returns the number of digests recorded."""
    from pipelines import warehouse as wh

    entries = read_journals(out_dir, week_start, clinic_ids)
    if not entries:
        return 0
    with wh.open_warehouse(warehouse) as conn:
        return record(conn, entries)


def run_weekly_digest(
    warehouse: Path,
    config_dir: Path,
    as_of: dt.date,
    out_dir: Path,
    smtp: SmtpSettings | None = None,
    clinic_ids: Sequence[str] | None = None,
    source: Path | None = None,
) -> DigestRunSummary:
    """Render, write and (where `smtp` is given and an address is known) send every digest due
    on `as_of` for sessions dated in the seven days before it, clinics in parallel
    (`digest_workers`), reading `source` (default: `warehouse` itself) read-only; journal each
    delivery, then record them all in the warehouse ledger in one short write.

    Safe to re-run: a digest recorded as sent is skipped, failed ones are tried again. One
    clinic's invalid config is reported in the summary and does not stop the others."""
    from pipelines import warehouse as wh

    week = Week.before(as_of)
    configs, errors = load_clinic_configs(config_dir)
    summary = DigestRunSummary(as_of=as_of, week_start=week.start)
    summary.config_errors = [str(e) for e in errors]
    if source is None:
        source = warehouse
        with wh.open_warehouse(warehouse):
            pass  # the schema (and the ledger table) brought up to date before reading
    conn = wh.connect(source, read_only=True)
    try:
        flagged_clinics = conn.execute(
            "select distinct clinic_id from flags where session_date >= ? and session_date < ?",
            [week.start, week.end],
        ).fetchall()
    finally:
        conn.close()
    summary.unconfigured_clinics = sorted({c for (c,) in flagged_clinics} - set(configs))
    chosen = [
        cfg
        for clinic_id, cfg in sorted(configs.items())
        if clinic_ids is None or clinic_id in clinic_ids
    ]
    workers = digest_workers(len(chosen))
    if workers <= 1:
        for cfg in chosen:
            summary.deliveries.extend(deliver_clinic(source, cfg, week, out_dir, smtp))
    else:
        # processes, not threads: rendering is CPU-bound Python (matplotlib, Jinja2); spawned,
        # so no DuckDB or SMTP state of this process is copied into them
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [
                pool.submit(deliver_clinic, source, cfg, week, out_dir, smtp) for cfg in chosen
            ]
            for future in futures:
                summary.deliveries.extend(future.result())
    record_deliveries(warehouse, out_dir, week.start, [cfg.clinic_id for cfg in chosen])
    return summary
