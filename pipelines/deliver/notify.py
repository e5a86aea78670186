"""Operational notices to a clinic's data team over SMTP: what an ingest run accepted and
rejected (the receipt), a task failed, or a feed is late.

The DAG layer gathers the facts (DAG, task, run, try, log address) and hands them over as plain
values; this module never imports Airflow. A notice never carries a data value from a clinic
file: only our own errors (`AllianceWatchError`, whose messages promise no values) are quoted,
anything else is named by its type alone, and the log address says where the rest is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from pipelines.deliver.mailer import (
    DEFAULT_SENDER,
    SendResult,
    SmtpSettings,
    send,
    smtp_settings_from_env,
)
from pipelines.errors import AllianceWatchError
from pipelines.settings import ops_email

OPS_EMAIL_ENV = "ALLIANCE_WATCH_OPS_EMAIL"


@dataclass(frozen=True)
class FailureFacts:
    """What failed and where to read more; no data values."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    max_tries: int
    error: str  # from `safe_error_text`
    log_url: str | None


def safe_error_text(exc: BaseException | None) -> str:
    """The error as it may appear in an email: our own errors in full (their messages never
    contain clinic data), any other exception by its type only (its message might)."""
    if exc is None:
        return "unknown error (see the log)"
    if isinstance(exc, AllianceWatchError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (details in the log)"


def clinic_of_dag(dag_id: str) -> str | None:
    """The clinic an `ingest_<clinic_id>` DAG belongs to, else None."""
    return dag_id.removeprefix("ingest_") if dag_id.startswith("ingest_") else None


def ops_recipients(environ: Mapping[str, str] | None = None) -> list[str]:
    """The operations address (ALLIANCE_WATCH_OPS_EMAIL), if set."""
    return [a for a in [ops_email(environ)] if a]


def recipients_for(
    clinic_id: str | None, config_dir: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The clinic's data team (`notifications.data_team_email`); the operations address
    (ALLIANCE_WATCH_OPS_EMAIL) for shared DAGs, for a clinic without one, or whose config
    cannot be read."""
    ops = ops_recipients(environ)
    if clinic_id is None:
        return ops
    from pipelines.config import config_path, load_clinic_config
    from pipelines.errors import ConfigError

    try:
        cfg = load_clinic_config(config_path(config_dir, clinic_id))
    except ConfigError:
        return ops
    team = cfg.notifications.data_team_email
    return [team] if team else ops


def _notice(subject: str, sender: str, recipients: list[str], lines: list[str]) -> EmailMessage:
    """A plain-text notice: `[Alliance Watch] <subject>`, the body one line per entry."""
    msg = EmailMessage()
    msg["Subject"] = f"[Alliance Watch] {subject}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content("\n".join(lines))
    return msg


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def failure_message(facts: FailureFacts, sender: str, recipients: list[str]) -> EmailMessage:
    """The failure notice: subject names DAG and task, body the error, try and log address."""
    final = facts.try_number >= facts.max_tries
    return _notice(
        f"failed: {facts.dag_id}.{facts.task_id}",
        sender,
        recipients,
        [
            f"DAG:    {facts.dag_id}",
            f"Task:   {facts.task_id}",
            f"Run:    {facts.run_id}",
            f"Try:    {facts.try_number} of {facts.max_tries}"
            + ("" if final else " (Airflow will retry)"),
            f"Error:  {facts.error}",
            f"Log:    {facts.log_url or '(no log address configured)'}",
            "",
            "What to do: docs/operations.md, section 'Troubleshooting'.",
        ],
    )


@dataclass(frozen=True)
class StaleFeed:
    """A clinic whose newest delivery is older than its cadence allows."""

    clinic_id: str
    cadence_days: int
    last_received: str | None  # ISO timestamp, None = never delivered
    days_late: float | None


def freshness_message(feed: StaleFeed, sender: str, recipients: list[str]) -> EmailMessage:
    """The late-feed notice to the clinic's data team."""
    last = feed.last_received or "never"
    late = "" if feed.days_late is None else f" ({feed.days_late:.1f} days past the cadence)"
    return _notice(
        f"no new export from {feed.clinic_id}",
        sender,
        recipients,
        [
            f"Clinic:          {feed.clinic_id}",
            f"Expected every:  {feed.cadence_days} days (cadence_days in the clinic config)",
            f"Last delivery:   {last}{late}",
            "",
            "Please export the new sessions, write them to landing/<clinic_id>/, then write",
            "the marker inbox/<clinic_id>.ready (docs/operations.md, 'Delivering files').",
        ],
    )


def deliver(
    msg_for: EmailMessage, recipients: list[str], settings: SmtpSettings | None = None
) -> SendResult:
    """Send one notice (settings from the environment unless given). Without SMTP settings or
    recipients nothing is sent and the result says why; it never raises for SMTP errors."""
    settings = settings if settings is not None else smtp_settings_from_env()
    if settings is None:
        return SendResult(ok=False, attempts=0, error="no SMTP settings (ALLIANCE_WATCH_SMTP_HOST)")
    if not recipients:
        return SendResult(ok=False, attempts=0, error=f"no recipient ({OPS_EMAIL_ENV} unset)")
    return send(settings, msg_for, recipients)


def notify_failure(
    facts: FailureFacts, config_dir: Path, settings: SmtpSettings | None = None
) -> SendResult:
    """Send the failure notice to whoever owns the failed DAG (see `recipients_for`)."""
    settings = settings if settings is not None else smtp_settings_from_env()
    recipients = recipients_for(clinic_of_dag(facts.dag_id), config_dir)
    sender = settings.sender if settings else DEFAULT_SENDER
    return deliver(failure_message(facts, sender, recipients), recipients, settings)


# each ledger status in the receipt's words: (its line under the file, its count's label)
_STATUS_WORDS = {
    "loaded": ("loaded", "loaded"),
    "loaded_with_quarantine": ("loaded; rows held back", "loaded with rows held back"),
    "rejected": ("REJECTED: nothing loaded", "rejected"),
    "duplicate": ("duplicate: nothing loaded", "duplicate"),
    "already_loaded": ("loaded by an earlier try of this run", "loaded by an earlier try"),
}


def _n(value: object) -> int:
    return int(str(value or 0))


def receipt_message(
    clinic_id: str,
    run_id: str,
    files: list[Mapping[str, object]],
    sender: str,
    recipients: list[str],
) -> EmailMessage:
    """The ingest receipt: one block per file (status, rows in / loaded / held back /
    duplicate, the file-level reason or the commonest row reasons). Reasons are our own codes
    and explanations, never a delivered value."""
    by_status: dict[str, int] = {}
    for f in files:
        by_status[str(f["status"])] = by_status.get(str(f["status"]), 0) + 1
    rejected = by_status.get("rejected", 0)
    held = sum(_n(f.get("rows_quarantined")) for f in files)
    counts = ", ".join(
        f"{n} {_STATUS_WORDS.get(k, (k, k))[1]}" for k, n in sorted(by_status.items())
    )
    lines = [
        f"Clinic:  {clinic_id}",
        f"Run:     {run_id}",
        f"Files:   {len(files)} ({counts})",
        "Rows:    "
        + ", ".join(
            f"{sum(_n(f.get(key)) for f in files)} {word}"
            for key, word in (
                ("rows_in", "read"),
                ("rows_loaded", "loaded"),
                ("rows_quarantined", "held back"),
                ("rows_duplicate", "duplicate"),
                ("rows_filtered", "filtered (not measures, by the config)"),
            )
        ),
        "",
    ]
    for f in sorted(files, key=lambda f: (f["status"] != "rejected", str(f["file_name"]))):
        status = str(f["status"])
        lines.append(str(f["file_name"]))
        lines.append(f"  {_STATUS_WORDS.get(status, (status, status))[0]}")
        if status in ("loaded", "loaded_with_quarantine") or _n(f.get("rows_in")):
            lines.append(
                f"  rows: {_n(f.get('rows_in'))} read, {_n(f.get('rows_loaded'))} loaded, "
                f"{_n(f.get('rows_quarantined'))} held back, "
                f"{_n(f.get('rows_duplicate'))} duplicate"
            )
        if f.get("rejudged"):
            released = _n(f.get("rows_released"))
            lines.append(
                "  judged again (the clinic config, the de-identification guard or the "
                f"validation rules changed): {_counted(released, 'row')} held back before now "
                "loaded"
            )
        if f.get("error"):
            lines.append(f"  reason: {f['error']}")
        reasons = f.get("top_reasons") or []
        if reasons and isinstance(reasons, list):
            lines.append("  row reasons: " + ", ".join(str(r) for r in reasons))
        late = _n(f.get("sessions_out_of_order"))
        if late:
            # loaded, but detection leaves them out (docs/detection.md, "Sessions dated out of
            # order"): a count only, no date or client from the file
            lines.append(
                f"  {_counted(late, 'alliance session')} of the clients, instruments and "
                "episodes in this file dated after a later-numbered session of the same series: "
                "loaded, but left out of detection until the date or the number is corrected "
                "(detect_excluded_sessions, after detection runs)"
            )
        filtered = f.get("filtered_reasons") or []
        if filtered and isinstance(filtered, list):
            # rows the clinic's config says are not measures: counted apart from rows read
            lines.append(
                f"  rows filtered ({_n(f.get('rows_filtered'))}, not read as measures): "
                + ", ".join(str(r) for r in filtered)
            )
    lines += [
        "",
        "A rejected file loads nothing: fix the export or the clinic config and deliver it",
        "again. Rows held back are in the warehouse's quarantined_rows with every reason",
        "(identifying values redacted); the other rows of their file loaded. Every reason is",
        "explained in docs/validation.md. This receipt names files and reasons only, never a",
        "value from a file.",
    ]
    subject = (
        f"{clinic_id}: {_counted(len(files), 'file')} received, {rejected} rejected, "
        f"{_counted(held, 'row')} held back"
    )
    return _notice(subject, sender, recipients, lines)


def notify_receipt(
    clinic_id: str,
    run_id: str,
    files: list[Mapping[str, object]],
    config_dir: Path,
    settings: SmtpSettings | None = None,
) -> SendResult:
    """Send the receipt of one ingest run to the clinic's data team
    (`notifications.data_team_email`; never the operations address: a receipt per run is the
    clinic's business), unless the clinic turned receipts off or the run found no file."""
    from pipelines.config import config_path, load_clinic_config
    from pipelines.errors import ConfigError

    if not files:
        return SendResult(ok=False, attempts=0, error="no file in this run: no receipt")
    try:
        cfg = load_clinic_config(config_path(config_dir, clinic_id))
    except ConfigError as e:  # changed since the run read it: the next run's discover says so
        return SendResult(ok=False, attempts=0, error=f"clinic config unreadable: {e}")
    if not cfg.notifications.ingest_receipt:
        return SendResult(ok=False, attempts=0, error="receipts off (notifications.ingest_receipt)")
    team = cfg.notifications.data_team_email
    if not team:
        return SendResult(ok=False, attempts=0, error="no notifications.data_team_email")
    settings = settings if settings is not None else smtp_settings_from_env()
    sender = settings.sender if settings else DEFAULT_SENDER
    return deliver(receipt_message(clinic_id, run_id, files, sender, [team]), [team], settings)


def notify_internal_errors(
    clinic_id: str,
    run_id: str,
    files: list[Mapping[str, object]],
    settings: SmtpSettings | None = None,
) -> SendResult | None:
    """Tell the operations address (ALLIANCE_WATCH_OPS_EMAIL) of files this run held back for
    a fault of ours (`internal_error`): the run itself succeeds (the other files loaded), so no
    failure notice goes out, and the data team's receipt is not the place to fix it. None when
    there was no such file. The reason names an exception type and code location only."""
    from pipelines.warehouse import INTERNAL_ERROR

    faults = [f for f in files if str(f.get("error") or "").startswith(f"{INTERNAL_ERROR}:")]
    if not faults:
        return None
    recipients = ops_recipients()
    settings = settings if settings is not None else smtp_settings_from_env()
    lines = [f"Clinic:  {clinic_id}", f"Run:     {run_id}", ""]
    for f in faults:
        lines += [str(f["file_name"]), f"  {f['error']}"]
    lines += [
        "",
        "The run's other files loaded. Each file above is offered again with every run until it",
        "is prepared without error; the task log of the run's prepare step has the traceback.",
    ]
    msg = _notice(
        f"{clinic_id}: {_counted(len(faults), 'file')} held back by a fault in Alliance Watch",
        settings.sender if settings else DEFAULT_SENDER,
        recipients,
        lines,
    )
    return deliver(msg, recipients, settings)
