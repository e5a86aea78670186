"""`alliance-watch calibrate`: suggest a clinic's alert_budget from its clinicians' answers
(changes nothing).
"""

from __future__ import annotations

import argparse

from pipelines.cli.args import add_clinic, add_config_dir, add_warehouse
from pipelines.deliver.outcomes import calibrate
from pipelines.errors import AllianceWatchError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_clinic(p)
    add_warehouse(
        p,
        "warehouse or snapshot file, opened read-only (default: the analyst snapshot, "
        "ALLIANCE_WATCH_SNAPSHOT or under ALLIANCE_WATCH_HOME)",
        required=False,
    )
    add_config_dir(
        p,
        "clinic configs, for the clinic's current alert_budget (default: "
        "ALLIANCE_WATCH_CONFIG_DIR or ALLIANCE_WATCH_HOME/config)",
        required=False,
    )


def run(args: argparse.Namespace) -> int:
    """Print the suggested alert_budget and what it rests on; writes nothing."""
    from pipelines.config import load_clinic_config
    from pipelines.settings import paths_from_env
    from pipelines.warehouse import connect

    paths = paths_from_env()
    source = args.warehouse or paths.snapshot
    if not source.is_file():
        raise AllianceWatchError(f"--warehouse {source}: no such file")
    config_dir = args.config_dir or paths.config_dir
    config_file = config_dir / "clinics" / f"{args.clinic}.yaml"
    budget = None
    if config_file.is_file():
        budget = load_clinic_config(config_file).thresholds.alert_budget
    conn = connect(source, read_only=True)
    try:
        result = calibrate(conn, args.clinic, budget)
    finally:
        conn.close()
    print("\n".join(result.lines()))
    return 0
