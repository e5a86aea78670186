"""Small cells in summaries: a count of 1 to SMALL_CELL - 1 is shown as "<5", so a summary
never singles out a client or clinician."""

from __future__ import annotations

SMALL_CELL = 5  # counts 1..SMALL_CELL-1 are shown as "<5" in summaries


def suppress(n: int) -> str:
    """A count for a summary, with small cells (1..SMALL_CELL-1) shown as '<5'."""
    if n == 0:
        return "0"
    return f"<{SMALL_CELL}" if n < SMALL_CELL else str(n)
