"""Small trajectory charts for the digest: alliance and symptom scores per session, as PNG.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no display), so it
is safe in worker processes and threads. Every chart comes with alt text that says the same
thing in words, for screen readers and for mail clients that block images.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines import registry

WIDTH_PX = 560  # fits a 640 px mail column with margins
PANEL_HEIGHT_PX = 120
DPI = 100


@dataclass(frozen=True)
class Series:
    """One instrument's totals over sessions, in session order."""

    instrument: str
    sessions: Sequence[int]
    totals: Sequence[float]
    flagged_sessions: Sequence[int] = ()


@dataclass(frozen=True)
class Chart:
    png: bytes
    alt: str
    width: int
    height: int


def format_total(instrument: str, value: float) -> str:
    """A total at the precision its instrument is scored in (SRS 33.0, WAI-SR 3.25, PHQ-9 12)."""
    ins = registry.get(instrument)
    if ins.scoring == "mean":
        return f"{value:.2f}"
    return f"{value:.1f}" if ins.item_step < 1 else f"{value:.0f}"


def _alt(series: Series) -> str:
    ins = registry.get(series.instrument)
    values = ", ".join(format_total(series.instrument, v) for v in series.totals)
    better = "higher is better" if ins.direction == "higher_better" else "lower is better"
    first, last = series.sessions[0], series.sessions[-1]
    return (
        f"{series.instrument} sessions {first}-{last}: {values} (cutoff {ins.cutoff:g}; {better})"
    )


def _y_range(s: Series, ins: registry.Instrument) -> tuple[float, float]:
    # Zoom in on the data and the cutoff: on the full 0-40 SRS scale a ceiling-level drop from
    # 39 to 33 looks flat, and that drop is the news.
    span = ins.total_max - ins.total_min
    lo = min(min(s.totals), max(s.totals), ins.cutoff)
    hi = max(max(s.totals), ins.cutoff)
    pad = 0.1 * span
    edge = 0.04 * span  # so a score at the scale's floor or ceiling is not cut in half
    return max(ins.total_min - edge, lo - pad), min(ins.total_max + edge, hi + pad)


def trajectory_chart(alliance: Series | None, symptoms: Series | None) -> Chart | None:
    """A one- or two-panel PNG (alliance above, symptoms below) with its alt text.

    Each panel shows the instrument's cutoff as a dashed line and flagged sessions as red dots.
    Returns None when there is nothing to draw.
    """
    panels = [s for s in (alliance, symptoms) if s is not None and len(s.totals) > 0]
    if not panels:
        return None
    height = PANEL_HEIGHT_PX * len(panels)
    fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, s in zip(axes, panels, strict=True):
        ins = registry.get(s.instrument)
        colour = "#2b5d8a" if ins.construct == "alliance" else "#7a5195"
        ax.plot(s.sessions, s.totals, marker="o", markersize=3, linewidth=1.5, color=colour)
        marked = set(s.flagged_sessions)
        flagged = [(x, y) for x, y in zip(s.sessions, s.totals, strict=True) if x in marked]
        if flagged:
            xs, ys = zip(*flagged, strict=True)
            ax.plot(xs, ys, linestyle="none", marker="o", markersize=6, color="#c0392b")
        ax.axhline(ins.cutoff, color="#999999", linestyle="--", linewidth=1)
        ax.set_ylim(*_y_range(s, ins))
        ax.set_ylabel(s.instrument, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", color="#eeeeee", linewidth=0.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel("session", fontsize=8)
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout(pad=0.4)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    alt = "Trajectory. " + "; ".join(_alt(s) for s in panels) + "."
    return Chart(png=buf.getvalue(), alt=alt, width=WIDTH_PX, height=height)
