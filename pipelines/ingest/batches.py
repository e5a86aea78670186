"""How an Airflow ingest run splits its discovered files between `prepare` tasks.

A task has a fixed cost (process start, supervisor, API calls, XCom) before it does anything,
and a small export file prepares in less (figures: benchmarks/README.md, many clinics). So a
clinic's small files go together into one task, where the worker processes of
`pipelines.ingest.pool` prepare them side by side, and only a file of at least `fanout_bytes`
gets a task of its own (on Celery, possibly another machine). The load puts the results back
in discovery order (file-name order: a later export of a clinic supersedes an earlier one),
whatever task prepared them.
"""

from __future__ import annotations

from collections.abc import Sequence

SEQ = "seq"  # an item's place in discovery order, carried through prepare to the load


def plan(items: list[dict[str, object]], fanout_bytes: int) -> list[list[dict[str, object]]]:
    """The discovered items as batches, one `prepare` task each: first every entry rejected
    outright and every delivery smaller than `fanout_bytes` (one batch, when there are any),
    then one batch per larger delivery. Each item gains its place in discovery order (`seq`).
    No items: no batches (the run maps no `prepare` and loads nothing)."""
    numbered = [{**item, SEQ: i} for i, item in enumerate(items)]
    small = [i for i in numbered if not _is_large(i, fanout_bytes)]
    large = [[i] for i in numbered if _is_large(i, fanout_bytes)]
    return ([small] if small else []) + large


def split_small_large(
    items: list[dict[str, object]], fanout_bytes: int
) -> tuple[list[dict[str, object]], list[list[dict[str, object]]]]:
    """`plan` as the ingest DAG runs it: the small batch, which `prepare` prepares itself right
    after discovery (empty when there is none), and the large ones, one `prepare_large` task
    each."""
    batches = plan(items, fanout_bytes)
    if batches and not _is_large(batches[0][0], fanout_bytes):
        return batches[0], batches[1:]
    return [], batches


def _is_large(item: dict[str, object], fanout_bytes: int) -> bool:
    return item.get("kind") == "delivery" and int(str(item.get("bytes") or 0)) >= fanout_bytes


def in_discovery_order(batches: Sequence[Sequence[dict[str, object]]]) -> list[dict[str, object]]:
    """Every prepared item of every batch, in discovery order (by `seq`)."""
    flat = [item for batch in batches for item in batch]
    return sorted(flat, key=lambda item: int(str(item[SEQ])))
