"""Small trajectory charts for the digest: alliance and symptom scores per session, as PNG.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no display), so it
is safe in worker processes and threads. Every chart comes with alt text that says the same
thing in words, for screen readers and for mail clients that block images.

Speed (a Monday run draws one chart per flagged client, thousands across a network): each
thread keeps one figure per panel count and redraws it with the new data, with fixed margins
instead of `tight_layout`, since building a figure and fitting its layout is most of a chart's
cost (figures in benchmarks/README.md, from benchmarks/bench_digest.py).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipelines import registry

WIDTH_PX = 560  # fits a 640 px mail column with margins
PANEL_HEIGHT_PX = 120
DPI = 100
# fixed margins in pixels (room for the tick labels, the y label and, below, "session")
_LEFT_PX, _RIGHT_PX, _TOP_PX, _BOTTOM_PX, _GAP_PX = 52, 8, 6, 34, 10
ALLIANCE_COLOUR = "#2b5d8a"
SYMPTOM_COLOUR = "#7a5195"
FLAG_COLOUR = "#c0392b"


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


@dataclass
class _Panel:
    ax: Any
    line: Any
    dots: Any
    cutoff: Any


@dataclass
class _Canvas:
    fig: Figure
    canvas: FigureCanvasAgg
    panels: list[_Panel]


_local = threading.local()  # one set of figures per thread: a figure is not thread-safe


def _new_canvas(n_panels: int) -> _Canvas:
    height = PANEL_HEIGHT_PX * n_panels
    fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=_LEFT_PX / WIDTH_PX,
        right=1 - _RIGHT_PX / WIDTH_PX,
        top=1 - _TOP_PX / height,
        bottom=_BOTTOM_PX / height,
        hspace=_GAP_PX / ((height - _TOP_PX - _BOTTOM_PX) / n_panels),
    )
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    panels: list[_Panel] = []
    for ax in axes:
        (line,) = ax.plot([], [], marker="o", markersize=3, linewidth=1.5)
        (dots,) = ax.plot([], [], linestyle="none", marker="o", markersize=6, color=FLAG_COLOUR)
        cutoff = ax.axhline(0, color="#999999", linestyle="--", linewidth=1)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", color="#eeeeee", linewidth=0.5)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        panels.append(_Panel(ax, line, dots, cutoff))
    axes[-1].set_xlabel("session", fontsize=8)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    return _Canvas(fig, canvas, panels)


def _canvas(n_panels: int) -> _Canvas:
    cache: dict[int, _Canvas] = _local.__dict__.setdefault("canvases", {})
    if n_panels not in cache:
        cache[n_panels] = _new_canvas(n_panels)
    return cache[n_panels]


def trajectory_chart(alliance: Series | None, symptoms: Series | None) -> Chart | None:
    """A one- or two-panel PNG (alliance above, symptoms below) with its alt text.

    Each panel shows the instrument's cutoff as a dashed line and flagged sessions as red dots.
    Returns None when there is nothing to draw.
    """
    panels = [s for s in (alliance, symptoms) if s is not None and len(s.totals) > 0]
    if not panels:
        return None
    c = _canvas(len(panels))
    first = min(min(s.sessions) for s in panels)
    last = max(max(s.sessions) for s in panels)
    for p, s in zip(c.panels, panels, strict=True):
        ins = registry.get(s.instrument)
        p.line.set_data(list(s.sessions), list(s.totals))
        p.line.set_color(ALLIANCE_COLOUR if ins.construct == "alliance" else SYMPTOM_COLOUR)
        marked = set(s.flagged_sessions)
        flagged = [(x, y) for x, y in zip(s.sessions, s.totals, strict=True) if x in marked]
        p.dots.set_data([x for x, _ in flagged], [y for _, y in flagged])
        p.cutoff.set_ydata([ins.cutoff, ins.cutoff])
        p.ax.set_ylim(*_y_range(s, ins))
        p.ax.set_ylabel(s.instrument, fontsize=8)
    pad = max(0.5, 0.04 * (last - first))  # one session is a point, not a zero-width axis
    c.panels[0].ax.set_xlim(first - pad, last + pad)
    buf = io.BytesIO()
    c.canvas.print_png(buf)
    height = PANEL_HEIGHT_PX * len(panels)
    alt = "Trajectory. " + "; ".join(_alt(s) for s in panels) + "."
    return Chart(png=buf.getvalue(), alt=alt, width=WIDTH_PX, height=height)
