"""One delivery's result from its parts' outcomes, with keys repeated across parts judged as if
the file were one piece."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import ClinicConfig
from pipelines.ingest import parts as batching
from pipelines.ingest import read as readers
from pipelines.ingest.discovery import Delivery
from pipelines.ingest.stage import PartOutcome, base_result, stage_folders, stage_stem
from pipelines.warehouse import INTERNAL_ERROR, StagedFile, engine, parquet_source, remove_staged

log = logging.getLogger(__name__)


def _top_reasons(issues: pd.DataFrame, k: int = 5) -> list[str]:
    if issues.empty:
        return []
    codes = issues.drop_duplicates(["row", "reason"])["reason"]
    return [f"{reason} ({n})" for reason, n in Counter(codes).most_common(k)]


def assemble(
    delivery: Delivery,
    cfg: ClinicConfig,
    stage_dir: Path,
    parts: list[batching.Part],
    outcomes: list[PartOutcome],
) -> StagedFile:
    """One file's result from its parts' outcomes (in part order): a file rejected by any part
    is rejected as a whole, with the first part's reason and nothing staged; otherwise a key
    repeated across parts is judged as if the file were one piece, and the counts add up."""
    base = base_result(delivery, cfg)
    valid_dir, quarantine_dir = stage_folders(delivery, cfg, stage_dir)
    for part in parts:  # copies of parts not prepared (a rejected file stops early)
        if part.path != delivery.path:
            part.path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (stage_dir / f"{stage_stem(delivery, cfg)}.parts").rmdir()
    rejected = next((o.error for o in outcomes if o.error), None)
    if rejected is None and len(outcomes) > 1:
        # a keep_rows condition is judged on the whole file, not on each part
        checks: dict[str, tuple[int, int]] = {}
        for o in outcomes:
            for text, (put_to, held) in o.keep_rows_checks.items():
                before = checks.get(text, (0, 0))
                checks[text] = (before[0] + put_to, before[1] + held)
        unmet = readers.unmet_keep_rows(checks)
        if unmet is not None:
            rejected = str(unmet)
    if rejected is not None:
        base.error = rejected
        if rejected.startswith(f"{INTERNAL_ERROR}:"):
            log.error("[%s] %s: %s", cfg.clinic_id, delivery.path.name, rejected)
        for folder in (valid_dir, quarantine_dir):
            remove_staged(folder)
        return StagedFile(result=base)
    staged = StagedFile(result=base)
    staged.valid_path = valid_dir if any(valid_dir.glob("*.parquet")) else None
    staged.quarantine_path = quarantine_dir if any(quarantine_dir.glob("*.parquet")) else None
    base.ignored_columns = outcomes[-1].ignored_columns if outcomes else []
    base.rows_in = sum(o.rows_in for o in outcomes)
    base.rows_loaded = sum(o.kept for o in outcomes)
    base.rows_quarantined = sum(o.quarantined for o in outcomes)
    base.rows_duplicate = sum(o.duplicate for o in outcomes)
    filtered: Counter[str] = Counter()
    for o in outcomes:
        filtered.update(o.filtered)
    base.rows_filtered = sum(filtered.values())
    base.filtered_reasons = [f"{reason} ({n})" for reason, n in filtered.most_common()]
    frames = [o.issues for o in outcomes if o.issues is not None and not o.issues.empty]
    if delivery.dataset == "measures":
        staged.clients = sorted({c for o in outcomes for c in o.clients})
    if len(parts) > 1 and staged.valid_path is not None:
        cross = _cross_part_keys(staged, str(delivery.dataset))
        if cross is not None:
            frames.append(cross)
    base.data_docs_path = next((o.data_docs_path for o in outcomes if o.data_docs_path), None)
    issues = pd.concat(frames, ignore_index=True) if frames else readers.empty_issues()
    base.top_reasons = _top_reasons(issues)
    if base.rows_loaded == 0 and base.rows_quarantined > 0:
        base.status = "rejected"
        base.error = "no_valid_rows: every row was quarantined; see quarantined_rows"
    else:
        base.status = "loaded_with_quarantine" if base.rows_quarantined else "loaded"
    return staged


CROSS_PART_KEYS = {
    "measures": ("client_id", "episode_id", "session_number", "instrument"),
    "appointments": ("client_id", "appointment_date"),
}


KEY_CONFLICT = (
    "duplicate_key_in_file: the same key appears more than once in the file with different "
    "values; every copy is held back"
)


def _cross_part_keys(staged: StagedFile, dataset: str) -> pd.DataFrame | None:
    """Judge keys repeated across parts as validation judges them within one: exact copies
    count as duplicates (the first is kept), differing copies are all quarantined. Adjusts the
    staged files and counts; returns the issues (None when no key repeats, the usual case)."""
    assert staged.valid_path is not None
    r = staged.result
    src = parquet_source(staged.valid_path)
    key = ", ".join(CROSS_PART_KEYS[dataset])
    con = engine(threads=1)  # beside the workers: as the loader (settings.load_threads)
    try:
        # keys alone first: no key in two parts (the usual case) needs nothing more
        repeats = con.execute(
            f"select count(*) from (select {key} from read_parquet(?) "  # noqa: S608
            f"group by {key} having count(*) > 1)",
            [src],
        ).fetchall()[0][0]
        if not repeats:
            staged.keys_unique = True  # the loader need not count them again
            return None
        con.execute("create table v as select * from read_parquet(?)", [src])
        cols = [c for (c,) in con.execute("select name from pragma_table_info('v')").fetchall()]
        values = ", ".join(f"{c} := {c}" for c in cols if c not in ("source_line", "source_file"))
        con.execute(
            f"""
            create table repeated as
            select {key}, count(distinct struct_pack({values})) as variants
            from v group by {key} having count(*) > 1
            """  # noqa: S608 - column names from the canonical schema
        )
        if not con.execute("select count(*) from repeated").fetchall()[0][0]:
            return None
        con.execute(
            f"""
            create table judged as
            with ranked as (
                select v.*, rp.variants,
                       row_number() over (partition by {", ".join("v." + k for k in CROSS_PART_KEYS[dataset])}
                                          order by v.source_line) as copy_no
                from v left join repeated as rp using ({key})
            )
            select *,
                   case when variants > 1 then 'conflict'
                        when variants = 1 and copy_no > 1 then 'duplicate'
                        else 'keep' end as verdict
            from ranked
            """  # noqa: S608
        )
        counts = dict(con.execute("select verdict, count(*) from judged group by 1").fetchall())
        keep_cols = ", ".join(cols)
        kept = con.execute(
            f"select {keep_cols} from judged where verdict = 'keep' order by source_line"  # noqa: S608
        ).fetch_arrow_table()
        conflict = con.execute(
            f"""
            select source_line as line_number, [?] as reasons,
                   to_json(struct_pack({values}))::varchar as row_data
            from judged where verdict = 'conflict' order by source_line
            """,  # noqa: S608
            [KEY_CONFLICT],
        ).fetch_arrow_table()
    finally:
        con.close()
    # the judged rows replace the parts' files (the folder is read as one table)
    remove_staged(staged.valid_path)
    staged.valid_path.mkdir()
    pq.write_table(kept, staged.valid_path / "p00000.parquet")
    n_conflict = int(counts.get("conflict", 0))
    n_dup = int(counts.get("duplicate", 0))
    if n_conflict:
        q_dir = staged.valid_path.with_name(
            staged.valid_path.name.removesuffix(".valid") + ".quarantine"
        )
        conflict = conflict.cast(
            pa.schema(
                [
                    ("line_number", pa.int64()),
                    ("reasons", pa.list_(pa.string())),
                    ("row_data", pa.string()),
                ]
            )
        )
        q_dir.mkdir(exist_ok=True)
        pq.write_table(conflict, q_dir / "p_keys_across_parts.parquet")  # sorts after the parts
        staged.quarantine_path = q_dir
    staged.keys_unique = True  # every repeated key was resolved above
    staged.clients = None  # a client whose rows were all held back is no longer in the file
    r.rows_loaded -= n_conflict + n_dup
    r.rows_quarantined += n_conflict
    r.rows_duplicate += n_dup
    if r.rows_loaded == 0:
        remove_staged(staged.valid_path)
        staged.valid_path = None
    return pd.DataFrame(
        {
            "row": -np.arange(1, n_conflict + n_dup + 1, dtype="int64"),
            "reason": [KEY_CONFLICT] * n_conflict + ["duplicate_row"] * n_dup,
        }
    )
