"""`alliance-watch evaluate`: the detector's and the deployed rules' scores against the
simulator's truth, or over the grid of simulated worlds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.args import add_warehouse
from pipelines.detect.evaluate import TruthError, evaluate, format_table, load_truth
from pipelines.detect.ruptures import DetectParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_warehouse(parser, required=False)
    parser.add_argument("--truth", type=Path, help="the simulator's truth.csv")
    parser.add_argument(
        "--grid",
        action="store_true",
        help="score detection over the grid of simulated worlds instead (docs/detection.md)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="with --grid: the seeds (default: the report seeds, not the tuning ones)",
    )
    parser.add_argument(
        "--alert-budget",
        type=float,
        default=None,
        help="with --grid: score with this alert budget (e.g. 0.05)",
    )


def run(args: argparse.Namespace) -> int:
    """`alliance-watch evaluate`: print the detector's and the deployed rules' scores."""
    if args.grid:
        from pipelines.detect.grid import REPORT_SEEDS, format_grid, run_grid

        params = DetectParams(alert_budget=args.alert_budget)
        grid = run_grid(seeds=args.seeds or REPORT_SEEDS, params=params)
        print(format_grid(grid))
        return 0
    if args.warehouse is None or args.truth is None:
        raise TruthError("give --warehouse FILE and --truth FILE (or --grid)")
    from pipelines.warehouse import connect

    truth = load_truth(args.truth)
    if not args.warehouse.exists():
        raise TruthError(f"{args.warehouse}: warehouse file does not exist; run ingest first")
    conn = connect(args.warehouse)
    try:
        results = evaluate(conn, truth)
    finally:
        conn.close()
    print(format_table(results))
    return 0
