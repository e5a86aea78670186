"""`alliance-watch forget`: erase every trace of one client (right to erasure)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.args import add_clinic, add_config_dir, add_warehouse
from pipelines.erasure import forget
from pipelines.errors import AllianceWatchError
from pipelines.settings import paths_from_env
from pipelines.warehouse import backend


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def default_snapshot(warehouse: Path) -> Path:
    """The analyst snapshot that belongs to a warehouse file: beside it, as under
    ALLIANCE_WATCH_HOME (`warehouse/alliance.duckdb` -> `warehouse/snapshot/...`)."""
    return warehouse.resolve().parent / "snapshot" / "alliance_snapshot.duckdb"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_warehouse(p, "DuckDB warehouse file (not used when the configured warehouse is not a file)")
    add_clinic(p)
    p.add_argument("--client", required=True, help="the client code to erase")
    p.add_argument("--note", default=None, help="operator note for the audit (not the code)")
    p.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="analyst snapshot to republish afterwards (default, when it exists: the "
        "configured one (ALLIANCE_WATCH_SNAPSHOT or under ALLIANCE_WATCH_HOME) if --warehouse "
        "is the configured warehouse, else snapshot/alliance_snapshot.duckdb beside --warehouse)",
    )
    p.add_argument(
        "--outbox",
        type=Path,
        default=None,
        help="digest outbox whose digests naming the client are rendered again without them "
        "(default: ALLIANCE_WATCH_OUTBOX, or ALLIANCE_WATCH_HOME/outbox, when it exists and "
        "--warehouse is the configured warehouse)",
    )
    add_config_dir(
        p,
        "clinic configs, to render those digests (default: ALLIANCE_WATCH_CONFIG_DIR, or "
        "ALLIANCE_WATCH_HOME/config, for the configured warehouse); without the clinic's "
        "config they are removed instead",
        required=False,
    )


def run(args: argparse.Namespace) -> int:
    """Erase the client and print what was removed (never the code)."""
    if not backend(args.warehouse).exists():
        raise AllianceWatchError(f"--warehouse {args.warehouse}: no such file")
    from pipelines.deliver.alerts import notices_dir

    paths = paths_from_env()
    # The installation's defaults (ALLIANCE_WATCH_*) belong to its own warehouse: for another
    # warehouse file they would republish the installation's snapshot with that file's rows
    # and render its digests again from them. Then the snapshot beside the warehouse given
    # (the same layout: <folder>/snapshot/alliance_snapshot.duckdb) is the default, and the
    # outbox, configs and notice ledger are used only when named.
    own = _same_file(args.warehouse, paths.warehouse)
    outbox = args.outbox if args.outbox is not None else (paths.outbox if own else None)
    if args.outbox is not None and not args.outbox.is_dir():
        raise AllianceWatchError(f"--outbox {args.outbox}: no such folder")
    config_dir = args.config_dir if args.config_dir is not None else paths.config_dir
    if args.config_dir is None and not own:
        config_dir = None
    # the snapshot is republished whether named or not: immediate notices read it, and would
    # otherwise announce the erased client's episodes again
    snapshot = args.snapshot
    if snapshot is None:
        snapshot = paths.snapshot if own else default_snapshot(args.warehouse)
    r = forget(
        args.warehouse,
        args.clinic,
        args.client,
        args.note,
        snapshot if args.snapshot is not None or snapshot.exists() else None,
        outbox if outbox is not None and outbox.is_dir() else None,
        config_dir if config_dir is not None and config_dir.is_dir() else None,
        notices_dir(paths) if own else None,
        paths.answers if own else None,
    )
    parts = ", ".join(f"{k} {v}" for k, v in sorted(r.rows_removed.items()) if v)
    print(
        f"erased one client of {r.clinic_id}: {r.total} rows ({parts or 'none found'}); "
        f"audit erasure_id {r.erasure_id}"
    )
    if outbox is not None and outbox.is_dir():
        print(
            f"outbox {outbox}: of the digests that named the client, "
            f"{r.outbox_rendered_again} rendered again without them, {r.outbox_removed} removed"
        )
    if r.notices_removed:
        print(
            f"immediate-notice ledger: {r.notices_removed} announced episodes of the client removed"
        )
    return 0
