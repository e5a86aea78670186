"""Arguments and argument types shared by the commands."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def iso_date(text: str) -> dt.date:
    """An argparse type: a date as YYYY-MM-DD, or the one-line usage error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date as YYYY-MM-DD") from None


def add_warehouse(
    p: argparse.ArgumentParser, help: str = "DuckDB warehouse file", required: bool = True
) -> None:
    """`--warehouse FILE` (a Path; None when optional and not given)."""
    p.add_argument("--warehouse", type=Path, required=required, default=None, help=help)


def add_config_dir(
    p: argparse.ArgumentParser,
    help: str = "folder holding clinics/<clinic_id>.yaml",
    required: bool = True,
) -> None:
    """`--config-dir DIR` (a Path; None when optional and not given)."""
    p.add_argument("--config-dir", type=Path, required=required, default=None, help=help)


def add_clinic(p: argparse.ArgumentParser) -> None:
    """`--clinic ID` (required)."""
    p.add_argument("--clinic", required=True, help="clinic_id")
