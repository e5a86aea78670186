"""`alliance-watch report`: a self-contained HTML report for analysts."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.args import add_warehouse
from pipelines.deliver.report import write_report
from pipelines.errors import AllianceWatchError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_warehouse(p, "warehouse or snapshot file")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")


def run(args: argparse.Namespace) -> int:
    """Write the analyst report from a warehouse or snapshot file and print its path."""
    if not args.warehouse.is_file():
        raise AllianceWatchError(f"--warehouse {args.warehouse}: no such file")
    out = write_report(args.warehouse, args.out)
    print(f"report: {out}")
    return 0
