"""`alliance-watch detect`: a full recompute of flags and alert episodes (clearing the
pending-detection ledger).
"""

from __future__ import annotations

import argparse

from pipelines.cli.args import add_config_dir, add_warehouse
from pipelines.detect.ruptures import DetectError, DetectParams, params_from_configs
from pipelines.warehouse import backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse(parser)
    add_config_dir(
        parser,
        "folder holding clinics/<clinic_id>.yaml (their `thresholds:` override the defaults)",
        required=False,
    )


def run(args: argparse.Namespace) -> int:
    """`alliance-watch detect`: full recompute of flags and alert episodes (clearing the
    pending-detection ledger); prints a summary."""
    from pipelines.config import load_clinic_configs
    from pipelines.warehouse import connect, migrate

    clinic_params: dict[str, DetectParams] = {}
    if args.config_dir is not None:
        configs, errors = load_clinic_configs(args.config_dir)
        for err in errors:
            print(f"config skipped (defaults used for its clinic): {err}")
        clinic_params = params_from_configs(configs)
    if not backend(args.warehouse).exists():
        raise DetectError(f"{args.warehouse}: warehouse file does not exist; run ingest first")
    from pipelines.detect.pending import detect_all

    conn = connect(args.warehouse)
    try:
        migrate(conn)
        summary = detect_all(conn, clinic_params)  # and clears the pending-detection ledger
    finally:
        conn.close()
    episodes = ", ".join(f"{n} {k}" for k, n in sorted(summary.episodes.items())) or "none"
    print(
        f"detect: {summary.clients} clients, {summary.sessions} alliance sessions, "
        f"{summary.flags} flags ({summary.new_flags} new, {summary.escalations} escalations), episodes: {episodes} "
        f"in {summary.seconds:.1f} s"
    )
    if summary.excluded_sessions:
        print(
            f"detect: {summary.excluded_sessions} alliance sessions left out, each dated after a "
            "higher-numbered session of its series (warehouse relation detect_excluded_sessions; "
            "the data teams' weekly summary lists them)"
        )
    return 0
