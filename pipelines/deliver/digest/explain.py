"""A flag in plain words with its numbers: what fell or rose, from what to what, which part of
the alliance fell most, and which of detection's reasons hold."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pipelines import registry
from pipelines.deliver.charts import format_total


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def part_that_fell(series: pd.DataFrame, instrument: str, session: int) -> str | None:
    """The subscale (or SRS item) that fell most between the previous session and `session`."""
    ins = registry.get(instrument)
    if not ins.subscales:
        return None
    now = series[series.session_number == session]
    before = series[series.session_number < session].tail(1)
    if now.empty or before.empty:
        return None
    deltas = {
        part: float(
            now[[f"item_{i}" for i in idx]].to_numpy().mean()
            - before[[f"item_{i}" for i in idx]].to_numpy().mean()
        )
        for part, idx in ins.subscales.items()
    }
    part, delta = min(deltas.items(), key=lambda kv: kv[1])
    ties = [p for p, d in deltas.items() if abs(d - delta) < 1e-9]
    # a uniform drop has no part that "fell most"; saying one would be invented evidence
    return part if delta < 0 and len(ties) == 1 else None


def named_part(reasons: set[str], fallen_part: Any) -> str | None:
    """The fallen part as detection recorded it (fallen_part, else the bond/goal-task rule)."""
    if _present(fallen_part):
        return str(fallen_part)
    if "bond_drop" in reasons:
        return "bond"
    if "goal_task_drop" in reasons:
        return "goal_task"
    return None


# What the detector's parts mean on each alliance instrument (sql/detect/rupture_signals.sql:
# bond = SRS relationship item / WAI-SR bond subscale; goal_task = SRS goals + approach items /
# WAI-SR goal + task subscales; overall = both fell alike).
_PART_NAMES: dict[str, dict[str, str]] = {
    "SRS": {
        "bond": "the relationship item fell most",
        "goal_task": "the goals and approach items fell most",
        "overall": "every item fell alike",
    },
    "WAI-SR": {
        "bond": "the bond items fell most",
        "goal_task": "the goal and task items fell most",
        "overall": "bond, goal and task items fell alike",
    },
}


def evidence_of(value: Any) -> dict[str, Any]:
    """The flag's evidence JSON as a dict ({} when absent or unreadable)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _part_phrase(instrument: str, part: str, evidence: dict[str, Any]) -> str:
    """'the relationship item fell most (4.6, usually 7.1)' from the fallen part and evidence."""
    ins = registry.get(instrument)
    named = _PART_NAMES.get(instrument, {})
    if part in named:
        phrase = named[part]
    elif instrument == "SRS" and part in ins.subscales:
        phrase = f"the {ins.item_labels[ins.subscales[part][0] - 1]} item fell most"
    else:
        phrase = f"the {part.replace('_', ' ')} items fell most"
    score, usual = evidence.get(f"{part}_score"), evidence.get(f"baseline_{part}")
    if isinstance(score, int | float) and isinstance(usual, int | float):
        digits = 2 if ins.scoring == "mean" else 1
        phrase += f" ({score:.{digits}f}, usually {usual:.{digits}f})"
    return phrase


def _worse_change(instrument: str, before: float, after: float) -> float:
    """How much worse `after` is than `before` on the instrument's own direction (> 0: worse)."""
    ins = registry.get(instrument)
    return before - after if ins.direction == "higher_better" else after - before


def _symptom_detail(
    client_hist: pd.DataFrame, session: int, named: Sequence[str] | None = None
) -> str | None:
    """'PHQ-9 rose from 9 to 16' for the symptom measure that worsened most up to `session`
    (among `named`, the instruments detection found deteriorated, when it says)."""
    best: tuple[float, str] | None = None
    for code in named or registry.SYMPTOM_INSTRUMENTS:
        if code not in registry.SYMPTOM_INSTRUMENTS:
            continue
        s = client_hist[(client_hist.instrument == code) & (client_hist.session_number <= session)]
        if len(s) < 2:
            continue
        before, after = float(s.total.iloc[-2]), float(s.total.iloc[-1])
        worse = _worse_change(code, before, after)
        if worse <= 0:
            continue
        verb = "fell" if registry.get(code).direction == "higher_better" else "rose"
        text = f"{code} {verb} from {format_total(code, before)} to {format_total(code, after)}"
        score = worse / registry.get(code).reliable_change
        if best is None or score > best[0]:
            best = (score, text)
    return best[1] if best else None


def explain(flag: pd.Series, client_hist: pd.DataFrame, with_symptoms: bool = True) -> str:
    """One flag in plain words with the numbers, e.g. 'SRS fell from 38.5 to 33.0, below the 36
    cutoff; the relationship item fell most'."""
    code = str(flag.instrument)
    ins = registry.get(code)
    reasons = set(flag.reasons)
    fmt = lambda v: format_total(code, float(v))  # noqa: E731
    cutoff = float(flag.cutoff) if _present(flag.cutoff) else ins.cutoff
    rc = float(flag.reliable_change) if _present(flag.reliable_change) else ins.reliable_change
    verb = "fell" if ins.direction == "higher_better" else "rose"
    total = float(flag.total) if _present(flag.total) else None
    prev = float(flag.previous_total) if _present(flag.previous_total) else None
    base = float(flag.baseline_total) if _present(flag.baseline_total) else None

    if total is not None and prev is not None and _worse_change(code, prev, total) > 0:
        head = f"{code} {verb} from {fmt(prev)} to {fmt(total)}"
    elif total is not None and base is not None and _worse_change(code, base, total) > 0:
        head = f"{code} {verb} to {fmt(total)} from the client's usual {fmt(base)}"
        base = None  # already said
    elif total is not None:
        head = f"{code} was {fmt(total)}"
    else:
        head = f"{code} was flagged"
    if total is not None and ins.is_concern(total):
        side = "below" if ins.direction == "higher_better" else "at or above"
        head += f", {side} the {cutoff:g} cutoff"

    clauses: list[str] = []
    if "reliable_drop_previous" in reasons and prev is not None and total is not None:
        clauses.append(
            f"a change of {fmt(abs(total - prev))}, more than the {rc:.2f} "
            "that counts as reliable change"
            if ins.scoring == "mean"
            else f"a change of {fmt(abs(total - prev))}, more than the {rc:.1f} points "
            "that count as reliable change"
        )
    if "reliable_drop_baseline" in reasons and base is not None and total is not None:
        clauses.append(
            f"{fmt(abs(_worse_change(code, base, total)))} worse than the client's own "
            f"baseline of {fmt(base)}"
        )
    evidence = evidence_of(flag.evidence)
    if "deflection" in reasons:
        sds = evidence.get("deflection_sd")
        clauses.append(
            f"a dip of more than {sds:g} SD of the client's own scores"
            if isinstance(sds, int | float)
            else "a sharp dip against the client's own history"
        )
    if "calibrated_drop" in reasons:
        clauses.append(
            "a drop larger than this client's usual ups and downs from session to session"
        )
    if "sustained_decline" in reasons:
        n = evidence.get("decline_sessions")
        clauses.append(
            f"a steady decline over the last {n} sessions"
            if isinstance(n, int)
            else "a steady decline over the last sessions"
        )
    part = named_part(reasons, flag.fallen_part)
    # when detection looked at the parts (its evidence has them) and named none, none fell
    # clearly; only older flags without that evidence get the part worked out here
    looked = "delta_bond" in evidence or "delta_goal_task" in evidence
    if part is None and not looked and ins.construct == "alliance" and total is not None:
        series = client_hist[client_hist.instrument == code]
        part = part_that_fell(series, code, int(flag.session_number))
    if part and ins.construct == "alliance":
        clauses.append(_part_phrase(code, part, evidence))
    if "disengagement" in reasons:
        clauses.append("a cancellation, no-show or skipped measure followed the drop")
    if "symptom_deterioration" in reasons and ins.construct == "alliance" and with_symptoms:
        named = evidence.get("deteriorated_instruments")
        detail = _symptom_detail(
            client_hist, int(flag.session_number), named if isinstance(named, list) else None
        )
        clauses.append(
            f"symptoms worsened at the same time ({detail})"
            if detail
            else "symptoms worsened at the same time"
        )
    return head + (("; " + "; ".join(clauses)) if clauses else "")
