"""The ingest receipt tells the data team at once when a load leaves alliance sessions dated
after a later-numbered session of the same series (they load, but detection leaves them out
until corrected: docs/detection.md, "Sessions dated out of order"). The functions the DAG's
ingest tasks call, without Airflow."""

from __future__ import annotations

from pathlib import Path

from pipelines.deliver.notify import receipt_message
from pipelines.ingest.batches import plan
from pipelines.ingest.run import discover_new, load_batches, prepare_items
from tests.conftest import reference_row
from tests.integration.test_rejudge import _clinic, _write


def _load(config: Path, landing: Path, wh: Path, stage: Path) -> list[dict[str, object]]:
    batches = plan(discover_new("ref_clinic", config, landing, wh), 2**40)
    prepared = [prepare_items(b, "ref_clinic", config, stage, None) for b in batches]
    summary = load_batches(prepared, "ref_clinic", config, wh)
    return summary["files"]  # type: ignore[return-value]


def test_the_receipt_counts_sessions_a_load_leaves_dated_out_of_order(tmp_path: Path) -> None:
    config, landing = _clinic(tmp_path)
    wh = tmp_path / "wh.duckdb"

    def srs(client: str, session: int, date: str) -> str:
        return reference_row(client, "T100A", date, session, "SRS", [9.0] * 4)

    _write(
        landing,
        "measures_1.csv",
        [srs("C1", 1, "2025-03-01"), srs("C1", 2, "2025-03-08"), srs("C1", 3, "2025-03-15")]
        + [srs("C2", 1, "2025-03-01"), srs("C2", 2, "2025-03-08")],
    )
    (first,) = _load(config, landing, wh, tmp_path / "s1")
    assert first["sessions_out_of_order"] == 0
    assert (
        "left out of detection"
        not in receipt_message(
            "ref_clinic", "run", [first], "aw@example.org", ["d@x.org"]
        ).get_content()
    )
    # session 4 typed with the wrong month: sessions 2 and 3 are now dated after it; C2's
    # series is untouched and not counted
    _write(landing, "measures_2.csv", [srs("C1", 4, "2025-03-05"), srs("C2", 3, "2025-03-15")])
    (second,) = _load(config, landing, wh, tmp_path / "s2")
    assert second["sessions_out_of_order"] == 2
    text = " ".join(
        receipt_message("ref_clinic", "run", [second], "aw@example.org", ["d@x.org"])
        .get_content()
        .split()
    )
    assert "2 alliance sessions of the clients, instruments and episodes in this file dated" in text
    assert "left out of detection until the date or the number is corrected" in text
    assert "2025-03" not in text and "C1" not in text  # never a value from the file
