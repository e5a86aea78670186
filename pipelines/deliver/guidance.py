"""Repair-conversation guidance: a few sentences matched to what fell.

The texts condense the rupture-repair literature (docs/digests.md cites it in full):
Safran & Muran (2000) *Negotiating the Therapeutic Alliance*; Eubanks, Muran & Safran (2018)
"Alliance rupture repair: a meta-analysis", Psychotherapy 55(4):508-519; Muran & Eubanks (2020)
*Therapist Performance Under Pressure*. They are prompts for a clinician's judgement, not a
protocol: at most two per client, so the digest stays short enough to be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Category = Literal[
    "disengagement", "bond", "goal_task", "symptom_deterioration", "low_level", "general"
]

# Which fallen part (flags.fallen_part, or the part the digest found) means which conversation.
_BOND_PARTS = frozenset({"bond", "relationship"})
_GOAL_TASK_PARTS = frozenset({"goal_task", "goal", "goals", "task", "approach"})
_DROP_REASONS = frozenset(
    {
        "reliable_drop_previous",
        "reliable_drop_baseline",
        "deflection",
        "sustained_decline",
        "bond_drop",
        "goal_task_drop",
        "calibrated_drop",
    }
)

# Order of importance when a client qualifies for several: a withdrawal rupture first (the
# client may not come back), then the part that fell, then context.
_ORDER: tuple[Category, ...] = (
    "disengagement",
    "bond",
    "goal_task",
    "general",
    "symptom_deterioration",
    "low_level",
)
MAX_PER_CLIENT = 2


@dataclass(frozen=True)
class Guidance:
    category: Category
    title: str
    text: str


GUIDANCE: dict[Category, Guidance] = {
    "bond": Guidance(
        "bond",
        "Talk about the relationship",
        "Name what you noticed and invite the client's view of how the sessions feel between "
        'you ("I have a sense something has been off between us lately; could we look at '
        'that?"). Take your share of the responsibility, stay curious rather than defensive, '
        "and let the client's experience lead: this metacommunication is the core of "
        "relational repair (Safran & Muran 2000; Muran & Eubanks 2020).",
    ),
    "goal_task": Guidance(
        "goal_task",
        "Renegotiate goals and methods",
        "Check whether you still agree on what the work is for and how you go about it. Ask "
        "what has been helpful and what has not, restate the goals in the client's words and "
        "adjust the tasks together; explaining the rationale of a method is itself a repair "
        "(Safran & Muran 2000; Eubanks, Muran & Safran 2018).",
    ),
    "disengagement": Guidance(
        "disengagement",
        "Reach out after a withdrawal",
        "A missed session or skipped measure right after a drop often signals a withdrawal "
        "rupture. Contact the client soon, make it easy to say what was unhelpful, and treat "
        "the absence as something to understand together rather than a compliance problem "
        "(Safran & Muran 2000; Eubanks, Muran & Safran 2018).",
    ),
    "symptom_deterioration": Guidance(
        "symptom_deterioration",
        "Review progress together",
        "Symptoms worsened reliably at the same time. Review the trajectory with the client, "
        "ask how they understand it and whether the current approach fits; consider a change "
        "of plan, more frequent contact or consultation.",
    ),
    "low_level": Guidance(
        "low_level",
        "Ask about the low ratings",
        "The alliance score has stayed under the cutoff. Ask, without pressure, what would make "
        "the sessions a better fit; low ratings given openly are an opening, and clients "
        "rarely raise dissatisfaction unprompted (Safran & Muran 2000).",
    ),
    "general": Guidance(
        "general",
        "Open a repair conversation",
        "Mention the change in the ratings, ask what happened in or around the last session, "
        "and listen for both what the client says and what is hard to say. Acknowledge your "
        "part and agree on what to try next (Eubanks, Muran & Safran 2018).",
    ),
}


def categories_for(
    reasons: Iterable[str], fallen_part: str | None, construct: str
) -> list[Category]:
    """The conversation categories that fit one flag, most important first."""
    reasons = set(reasons)
    found: set[Category] = set()
    part = (fallen_part or "").lower()
    if "disengagement" in reasons:
        found.add("disengagement")
    if "bond_drop" in reasons or part in _BOND_PARTS:
        found.add("bond")
    if "goal_task_drop" in reasons or part in _GOAL_TASK_PARTS:
        found.add("goal_task")
    if "symptom_deterioration" in reasons or construct == "symptoms":
        found.add("symptom_deterioration")
    if construct == "alliance" and reasons & _DROP_REASONS and not found & {"bond", "goal_task"}:
        found.add("general")
    if "below_cutoff" in reasons and not reasons & _DROP_REASONS:
        found.add("low_level")
    if not found:
        found.add("general")
    return [c for c in _ORDER if c in found]


def guidance_for(categories: Iterable[Category]) -> list[Guidance]:
    """At most MAX_PER_CLIENT guidance texts, in order of importance, without repeats."""
    wanted = set(categories)
    return [GUIDANCE[c] for c in _ORDER if c in wanted][:MAX_PER_CLIENT]
