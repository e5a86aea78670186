"""`alliance-watch digest`: render (and send) the weekly digests due on a date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.args import add_config_dir, add_warehouse, iso_date
from pipelines.deliver.digest import run_weekly_digest
from pipelines.deliver.mailer import SmtpSettings
from pipelines.errors import AllianceWatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse(parser)
    add_config_dir(parser)
    parser.add_argument(
        "--date",
        type=iso_date,
        required=True,
        help="run date YYYY-MM-DD; covers sessions dated in the seven days before it",
    )
    parser.add_argument("--out", type=Path, required=True, help="outbox folder for the digests")


def run(args: argparse.Namespace) -> int:
    """Write (and send, when ALLIANCE_WATCH_SMTP_HOST is set) the digests; 1 if a send failed."""
    from pipelines import warehouse as wh

    if not wh.backend(args.warehouse).exists():
        raise AllianceWatchError(f"warehouse {args.warehouse} does not exist; run ingest first")
    smtp = SmtpSettings.from_env()
    summary = run_weekly_digest(args.warehouse, args.config_dir, args.date, args.out, smtp)
    for err in summary.config_errors:
        print(f"config error (clinic skipped): {err}", file=sys.stderr)
    for clinic_id in summary.unconfigured_clinics:
        print(
            f"clinic {clinic_id} has flags this week but no valid config; no digest written",
            file=sys.stderr,
        )
    print(summary.line())
    print(f"outbox: {args.out}")
    return 1 if summary.failed else 0
