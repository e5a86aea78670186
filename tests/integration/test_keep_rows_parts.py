"""`keep_rows` over a file read in parts: a condition that holds on no row of the *file* rejects
it (`nothing_kept`), but a part made only of rows it excludes (a large Qualtrics export whose
first megabytes are survey previews) is just filtered. Judged per part, that part rejected the
whole file."""

from __future__ import annotations

from pathlib import Path

from pipelines.ingest import discovery, prepare
from tests.unit.test_readers_outside import HEAD, IMPORTS, QUALTRICS, _cfg


def _row(status: str, n: int) -> str:
    return f"{status},,1,2025-03-{3 + n % 20:02d} 10:00:00,,,7,8,9,9,C-{n:04d},T1,{1 + n % 9}\n"


def _prepare(tmp_path: Path, rows: list[str], **changes: object):  # type: ignore[no-untyped-def]
    cfg = _cfg(QUALTRICS, **changes)
    landing = tmp_path / "landing"
    (landing / cfg.clinic_id).mkdir(parents=True)
    texts = ",".join(["x"] * 13) + "\n"
    (landing / cfg.clinic_id / "measures_export.csv").write_text(
        HEAD + texts + IMPORTS + "".join(rows)
    )
    (d,), _ = discovery.discover(cfg, landing, {})
    return prepare.prepare_file(d, cfg, tmp_path / "stage", part_bytes=1024, build_docs=False)


def test_a_part_of_only_excluded_rows_is_filtered_not_rejected(tmp_path: Path) -> None:
    previews = [_row("Survey Preview", n) for n in range(40)]  # well over one 1 KB part
    responses = [_row("0", 100 + n) for n in range(10)]
    staged = _prepare(tmp_path, previews + responses)
    assert staged.result.error is None, staged.result.error
    assert staged.result.rows_loaded == 10
    assert staged.result.rows_filtered == 40


def test_a_condition_no_row_of_a_multi_part_file_meets_still_rejects_it(tmp_path: Path) -> None:
    rows = [_row("0", n) for n in range(60)]
    staged = _prepare(
        tmp_path,
        rows,
        keep_rows=["Finished == True"],  # the numeric export writes 1
    )
    assert staged.result.status == "rejected"
    assert staged.result.error is not None and staged.result.error.startswith("nothing_kept:")
    assert "'Finished'" in staged.result.error and "60 rows" in staged.result.error
