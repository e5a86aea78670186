"""`alliance-watch ingest`: every new file of every configured clinic (the same functions the
Airflow tasks call), and the table of what happened to each file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.args import add_config_dir, add_warehouse
from pipelines.config import load_clinic_configs
from pipelines.errors import AllianceWatchError, ConfigError
from pipelines.ingest.run import ingest_clinics
from pipelines.warehouse import (
    INTERNAL_ERROR,
    FileResult,
    backend,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_dir(p)
    p.add_argument("--landing", type=Path, required=True, help="folder with one folder per clinic")
    add_warehouse(p)
    p.add_argument(
        "--docs-dir", type=Path, default=None, help="where to build the GX Data Docs site"
    )
    p.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="republish this read-only analyst snapshot (DuckDB file) after the loads",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def format_table(results: list[FileResult]) -> str:
    """One line per file: clinic, file, status, row counts and its first reasons."""
    head = ("clinic", "file", "status", "in", "loaded", "quar.", "dup.", "filt.", "reasons")
    rows = [
        (
            r.clinic_id,
            r.file_name,
            r.status,
            str(r.rows_in),
            str(r.rows_loaded),
            str(r.rows_quarantined),
            str(r.rows_duplicate),
            str(r.rows_filtered),
            r.error or "; ".join([*r.top_reasons[:3], *r.filtered_reasons[:2]]),
        )
        for r in results
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    widths[-1] = len(head[-1])

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([fmt(head), *(fmt(r) for r in rows)])


def run(args: argparse.Namespace) -> int:
    """Ingest every new file and print what happened to each; 1 when a file was held back by
    a fault of ours (`internal_error`)."""
    if not args.config_dir.is_dir():
        raise ConfigError(str(args.config_dir), "--config-dir", "is not a folder")
    if not args.landing.is_dir():
        raise AllianceWatchError(f"--landing {args.landing}: is not a folder")
    configs, errors = load_clinic_configs(args.config_dir)
    for e in errors:
        print(f"config error (clinic skipped): {e}", file=sys.stderr)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        results = ingest_clinics(
            list(configs.values()),
            args.landing,
            args.warehouse,
            args.docs_dir,
            progress=progress,
            snapshot=args.snapshot,
        )
    except Exception as e:
        explained = backend(args.warehouse).explain(e, "ingest")
        if explained is None:
            raise
        raise explained from None  # the files committed stay
    if results:
        print(format_table(results))
    else:
        print("no new files")
    faults = [r for r in results if (r.error or "").startswith(f"{INTERNAL_ERROR}:")]
    if faults:
        print(
            f"{len(faults)} file(s) held back by a fault in Alliance Watch (internal_error), "
            "offered again on the next run: " + ", ".join(r.file_name for r in faults),
            file=sys.stderr,
        )
        return 1
    return 0
