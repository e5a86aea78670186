"""`alliance-watch generate`: a synthetic multi-clinic dataset with its ground truth."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from pipelines.cli.args import iso_date
from pipelines.simulate.cohort import (
    SAMPLE_CLINICS,
    SimParams,
    SimulationError,
    default_clinics,
    simulate,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `alliance-watch generate`."""
    d = SimParams()
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--seed", type=_seed, required=True, help="random seed, 0 or more (deterministic)"
    )
    parser.add_argument(
        "--clinics", type=int, default=len(SAMPLE_CLINICS), help="number of clinics (default 4)"
    )
    parser.add_argument(
        "--clients", type=int, default=d.n_clients, help=f"clients per clinic ({d.n_clients})"
    )
    parser.add_argument(
        "--noise", type=float, default=d.noise, help="multiplier of within-client noise (1.0)"
    )
    parser.add_argument(
        "--rupture-rate",
        type=float,
        default=d.rupture_rate,
        help=f"share of clients with a rupture ({d.rupture_rate})",
    )
    parser.add_argument(
        "--repair-rate",
        type=float,
        default=d.repair_rate,
        help=f"share of ruptures repaired ({d.repair_rate})",
    )
    parser.add_argument("--as-of", type=iso_date, default=None, help="today's date (default today)")
    parser.add_argument(
        "--end-date", type=iso_date, default=None, help="last session date (default --as-of)"
    )
    parser.add_argument(
        "--start-date", type=iso_date, default=None, help="first date (default 182 days before end)"
    )
    parser.add_argument(
        "--tool-exports",
        action="store_true",
        help="also write the five tool-export clinics (Excel, PCOMS/FIT, REDCap, Qualtrics, one "
        "file per instrument; docs/clinic-onboarding.md)",
    )
    parser.add_argument(
        "--period",
        choices=("month", "quarter", "all"),
        default="month",
        help="one landing file per month (default), quarter, or one per dataset",
    )


def params_from_args(args: argparse.Namespace) -> SimParams:
    """Validated SimParams from the CLI options; SimulationError names the bad option."""
    as_of = args.as_of or dt.date.today()
    end = args.end_date or as_of
    start = args.start_date or end - dt.timedelta(days=182)
    if end > as_of:
        raise SimulationError("--end-date is after --as-of; session dates are never in the future")
    if (end - start).days < 28:
        raise SimulationError("--start-date must be at least 28 days before --end-date")
    if (end - start).days > 3660:
        raise SimulationError("--start-date is more than 10 years before --end-date")
    if not 1 <= args.clients <= 1_000_000:
        raise SimulationError("--clients must be between 1 and 1000000")
    for name in ("rupture_rate", "repair_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise SimulationError(f"--{name.replace('_', '-')} must be between 0 and 1")
    if not 0.0 <= args.noise <= 10.0:
        raise SimulationError("--noise must be between 0 and 10")
    return SimParams(
        n_clients=args.clients,
        start_date=start,
        end_date=end,
        noise=args.noise,
        rupture_rate=args.rupture_rate,
        repair_rate=args.repair_rate,
    )


def run(args: argparse.Namespace) -> int:
    """`alliance-watch generate`: write configs, landing files, truth.csv and canonical rows."""
    from pipelines.simulate.dataset import write_dataset

    params = params_from_args(args)
    specs = default_clinics(args.clinics)
    if getattr(args, "tool_exports", False):
        from pipelines.simulate.tool_exports import TOOL_CLINICS

        specs += list(TOOL_CLINICS)
    cohorts = simulate(specs, params, args.seed)
    summary = write_dataset(args.out, specs, cohorts, period=args.period)
    n_rows = sum(len(c.measures) for c in cohorts.values())
    n_r = sum(int((c.truth["kind"] == "rupture").sum()) for c in cohorts.values())
    print(
        f"generated {len(specs)} clinics, {n_rows} measure rows, {n_r} ruptures, "
        f"{summary.n_files} landing files -> {args.out}"
    )
    return 0


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value
