"""The prepare pool: files prepared part by part in forked worker processes while the caller
loads the files already prepared, in the order given."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipelines import settings
from pipelines.config import ClinicConfig
from pipelines.errors import FileRejected
from pipelines.ingest import parts as batching
from pipelines.ingest.assemble import assemble
from pipelines.ingest.discovery import Delivery
from pipelines.ingest.prepare import prepare_file, prepare_part, split_delivery
from pipelines.ingest.stage import PartOutcome, unknown_file
from pipelines.warehouse import StagedFile

if TYPE_CHECKING:
    from pipelines.validation import Verdicts


ProgressFn = Callable[[str], None]


def prepare_workers(deliveries: list[Delivery]) -> int:
    """How many processes prepare files at once: one per core (`ALLIANCE_WATCH_PREPARE_WORKERS`
    overrides), never more than the files; 1 means in this process. Preparing is CPU-bound
    Python (reader, guard, GX), so threads would not help; the DAGs get the same parallelism
    from mapped `prepare` tasks."""
    if len(deliveries) < 2:
        return 1
    n = settings.workers_wanted("PREPARE_WORKERS") or os.cpu_count() or 1
    return max(1, min(n, len(deliveries)))


@dataclass
class _Worker:
    """What a prepare worker keeps between the parts it is given: the GX verdicts of the run,
    shared with the other workers, each with its own rank."""

    verdicts: Verdicts | None = None


_WORKER = _Worker()  # one per worker process (a fork of the loader)


def _init_worker(parent: int, ranks: Any, workers: int, verdicts: Path) -> None:
    """Worker initializer. A worker never outlives the process that loads: if that process is
    killed, even with SIGKILL, its workers get SIGKILL too (Linux `PR_SET_PDEATHSIG`). Arrow
    allocates from the C heap, so `_release_memory` can hand a file's memory back."""
    import ctypes
    import signal

    from pipelines.validation import Sharing, Verdicts

    with ranks.get_lock():
        rank = int(ranks.value)
        ranks.value += 1
    _WORKER.verdicts = Verdicts(Sharing(verdicts, rank, workers))

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    # the loader is the pipeline's critical path: the workers take the CPU it leaves
    with contextlib.suppress(OSError):
        os.nice(settings.prepare_nice())
    pa.set_memory_pool(pa.system_memory_pool())


def _release_memory() -> None:
    """Return what one file's preparation freed to the system, so a worker's footprint stays
    that of one part rather than growing with every file (glibc keeps freed memory otherwise)."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _prepare_part_in_worker(
    delivery: Delivery,
    cfg: ClinicConfig,
    part: batching.Part,
    n_parts: int,
    stage_dir: Path,
    docs_dir: Path | None,
) -> PartOutcome:
    try:
        # Data Docs are rendered once for the run (publish_data_docs), not once per file
        return prepare_part(
            delivery, cfg, part, n_parts, stage_dir, docs_dir, False, _WORKER.verdicts
        )
    finally:
        _release_memory()


def prepared_in_order(
    jobs: list[tuple[Delivery, ClinicConfig]],
    stage_dir: Path,
    docs_dir: Path | None,
    progress: ProgressFn | None,
    workers: int | None = None,
) -> Generator[StagedFile, None, None]:
    """Each job's staged file, in the order given, prepared `prepare_workers` at a time.

    With several workers the files' parts are prepared in forked processes (which inherit the
    already imported GX) while the caller loads the files that are ready: loading (DuckDB, in
    this process) overlaps preparing (Python, in the workers), and a large file keeps every
    worker busy. Files are cut into parts here, a few files ahead of the one being loaded. A
    worker's exception is raised here, in order, and the parts not yet prepared are
    cancelled."""
    workers = workers or prepare_workers([d for d, _ in jobs])
    if workers == 1:
        from pipelines.validation import Verdicts

        verdicts = Verdicts()  # one memory for the run's files
        for i, (d, cfg) in enumerate(jobs, 1):
            if progress:
                progress(f"[{cfg.clinic_id}] {i}/{len(jobs)} preparing {d.path.name}")
            yield prepare_file(d, cfg, stage_dir, docs_dir, build_docs=False, verdicts=verdicts)
        return
    if progress:
        progress(f"preparing {len(jobs)} files in {workers} processes")
    import gc

    import pipelines.validation  # noqa: F401 - imported once, shared by the forked workers

    stage_dir.mkdir(parents=True, exist_ok=True)
    # Objects that exist now are never collected in the workers: the collector then does not
    # touch (and so copy) the pages the forked workers share with this process.
    gc.freeze()
    pending: deque[tuple[Delivery, ClinicConfig, list[batching.Part], list[Future[PartOutcome]]]]
    pending = deque()
    queued = iter(jobs)
    context = multiprocessing.get_context("fork")
    ranks = context.Value("i", 0)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(), ranks, workers, stage_dir / "verdicts"),
    ) as pool:

        def submit_next() -> bool:
            job = next(queued, None)
            if job is None:
                return False
            d, cfg = job
            if d.dataset is None:
                pending.append((d, cfg, [], []))
                return True
            try:
                parts = split_delivery(d, cfg, stage_dir)
            except FileRejected as e:
                settled: Future[PartOutcome] = Future()
                settled.set_result(PartOutcome(error=str(e)))
                pending.append((d, cfg, [], [settled]))
                return True
            futures = [
                pool.submit(_prepare_part_in_worker, d, cfg, p, len(parts), stage_dir, docs_dir)
                for p in parts
            ]
            gc.unfreeze()  # the workers exist now (a fork pool starts them at the first submit)
            pending.append((d, cfg, parts, futures))
            return True

        try:
            for i in range(1, len(jobs) + 1):
                # keep the workers busy past the file waited on (and while it loads)
                while sum(len(f) for *_, f in list(pending)[1:]) < 2 * workers and submit_next():
                    pass
                if not pending:
                    submit_next()
                d, cfg, parts, futures = pending.popleft()
                if d.dataset is None:
                    staged = unknown_file(d, cfg)
                else:
                    staged = assemble(d, cfg, stage_dir, parts, [f.result() for f in futures])
                if progress:
                    progress(f"[{cfg.clinic_id}] {i}/{len(jobs)} prepared {d.path.name}")
                yield staged
        finally:
            for *_, futures in pending:
                for f in futures:
                    f.cancel()
