"""The instrument registry: the single source of truth for every number the product uses.

Readers, Great Expectations suites, detection SQL, digests and docs all read these values;
nothing else in the code base may hard-code an item count, a range, a cutoff or a reliable-change
value. Clinics override thresholds in their config (``thresholds:``), never here.

Values marked "approx." are the usual published figures (see docs/instruments.md for the
citations); the reliable-change index is *derived* from SD and reliability (Jacobson & Truax 1991),
not typed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Construct = Literal["alliance", "symptoms"]
Direction = Literal["higher_better", "higher_worse"]
Scoring = Literal["sum", "mean"]

MAX_ITEMS = 12
ITEM_COLUMNS: tuple[str, ...] = tuple(f"item_{i}" for i in range(1, MAX_ITEMS + 1))

# Jacobson & Truax (1991): |RC| > 1.96 is reliable at p < .05.
RC_Z = 1.96


@dataclass(frozen=True)
class Instrument:
    code: str
    name: str
    construct: Construct
    n_items: int
    item_min: float
    item_max: float
    item_step: float  # smallest meaningful increment (SRS: one decimal)
    scoring: Scoring
    direction: Direction
    cutoff: float  # clinical / concern cutoff on the total scale
    sd: float  # population SD of the total (approx.), used for reliable change
    reliability: float  # reliability coefficient used for reliable change
    reliability_kind: str
    default_version: str
    citation: str
    subscales: dict[str, tuple[int, ...]] = field(default_factory=dict)
    item_labels: tuple[str, ...] = ()
    published_rc: float | None = None  # as quoted in the literature, for the docs only
    missing_items_allowed: int = 0  # no silent imputation: any missing item invalidates
    # Detection priors (alliance instruments): the typical client's within-client SD of the
    # total and of a part score (per-item mean) from session to session. A clinic's own data
    # replaces them within weeks (sql/detect/clinic_calibration.sql); they only carry a new
    # clinic's first sessions. See `within_sd_source`.
    within_sd: float | None = None
    within_part_sd: float | None = None
    within_sd_source: str = ""

    @property
    def total_min(self) -> float:
        return self.item_min if self.scoring == "mean" else self.item_min * self.n_items

    @property
    def total_max(self) -> float:
        return self.item_max if self.scoring == "mean" else self.item_max * self.n_items

    @property
    def standard_error(self) -> float:
        """SE of measurement = SD * sqrt(1 - r)."""
        return self.sd * math.sqrt(1.0 - self.reliability)

    @property
    def s_diff(self) -> float:
        """Standard error of the difference between two scores = sqrt(2) * SE."""
        return math.sqrt(2.0) * self.standard_error

    @property
    def reliable_change(self) -> float:
        """Smallest change on the total scale that is reliable (|RC| > 1.96)."""
        return RC_Z * self.s_diff

    @property
    def total_tolerance(self) -> float:
        """How far a delivered total may differ from the one computed from its items.

        Covers rounding: half of the smallest step for a sum, and a rounded mean's 2 decimals.
        """
        return 0.005 + 1e-9 if self.scoring == "mean" else self.item_step / 2 + 1e-9

    @property
    def item_columns(self) -> tuple[str, ...]:
        return ITEM_COLUMNS[: self.n_items]

    def is_concern(self, total: float) -> bool:
        """True when a total is on the concerning side of the cutoff."""
        if self.direction == "higher_better":
            return total < self.cutoff
        return total >= self.cutoff


INSTRUMENTS: dict[str, Instrument] = {
    "SRS": Instrument(
        code="SRS",
        name="Session Rating Scale v3",
        construct="alliance",
        n_items=4,
        item_min=0.0,
        item_max=10.0,
        item_step=0.1,
        scoring="sum",
        direction="higher_better",
        cutoff=36.0,
        sd=4.5,
        reliability=0.88,
        reliability_kind="internal consistency (alpha ~.88; test-retest .54-.70)",
        default_version="3.0",
        citation="Duncan et al. (2003), J Brief Therapy 3(1):3-12",
        subscales={"relationship": (1,), "goals": (2,), "approach": (3,), "overall": (4,)},
        item_labels=("relationship", "goals and topics", "approach or method", "overall"),
        within_sd=1.2,
        within_part_sd=0.5,
        within_sd_source=(
            "geometric middle of the plausible within-client SD of the total, 0.3-3.5 points, "
            "log-normal across clients (test-retest .54-.70, Duncan et al. 2003 and a 2020 "
            "review of 12 studies; ceiling effects, Meier & Feeley 2022)"
        ),
    ),
    "WAI-SR": Instrument(
        code="WAI-SR",
        name="Working Alliance Inventory - Short Revised",
        construct="alliance",
        n_items=12,
        item_min=1.0,
        item_max=5.0,
        item_step=1.0,
        scoring="mean",
        direction="higher_better",
        cutoff=3.0,  # approx.: below the scale midpoint, ~1.3 SD under the outpatient mean 3.9
        sd=0.7,
        reliability=0.90,
        reliability_kind="internal consistency (alpha ~.90, approx.)",
        default_version="1.0",
        citation="Hatcher & Gillaspy (2006), Psychotherapy Research 16(1):12-25",
        subscales={"goal": (4, 6, 8, 11), "task": (1, 2, 10, 12), "bond": (3, 5, 7, 9)},
        within_sd=0.2,
        within_part_sd=0.3,
        within_sd_source=(
            "middle of the plausible within-client SD of the mean, 0.1-0.4 (outpatient SD ~0.7, "
            "alpha ~.90, Hatcher & Gillaspy 2006; session-to-session share as for the SRS)"
        ),
    ),
    "ORS": Instrument(
        code="ORS",
        name="Outcome Rating Scale",
        construct="symptoms",
        n_items=4,
        item_min=0.0,
        item_max=10.0,
        item_step=0.1,
        scoring="sum",
        direction="higher_better",
        cutoff=25.0,
        sd=6.8,  # approx.; with alpha .93 reproduces the published reliable change of 5
        reliability=0.93,
        reliability_kind="internal consistency (alpha ~.93)",
        default_version="1.0",
        citation="Miller et al. (2003), J Brief Therapy 2(2):91-100",
        subscales={"individual": (1,), "interpersonal": (2,), "social": (3,), "overall": (4,)},
        item_labels=("individually", "interpersonally", "socially", "overall"),
        published_rc=5.0,
    ),
    "PHQ-9": Instrument(
        code="PHQ-9",
        name="Patient Health Questionnaire-9",
        construct="symptoms",
        n_items=9,
        item_min=0.0,
        item_max=3.0,
        item_step=1.0,
        scoring="sum",
        direction="higher_worse",
        cutoff=10.0,
        sd=5.4,  # approx.; with test-retest .84 reproduces the published reliable change of 6
        reliability=0.84,
        reliability_kind="test-retest (.84)",
        default_version="1.0",
        citation="Kroenke, Spitzer & Williams (2001), J Gen Intern Med 16(9):606-613",
        published_rc=6.0,
    ),
    "GAD-7": Instrument(
        code="GAD-7",
        name="Generalized Anxiety Disorder-7",
        construct="symptoms",
        n_items=7,
        item_min=0.0,
        item_max=3.0,
        item_step=1.0,
        scoring="sum",
        direction="higher_worse",
        cutoff=8.0,
        sd=5.1,  # approx.; with alpha .92 reproduces the published reliable change of 4
        reliability=0.92,
        reliability_kind="internal consistency (alpha .92)",
        default_version="1.0",
        citation="Spitzer et al. (2006), Arch Intern Med 166(10):1092-1097",
        published_rc=4.0,
    ),
}

ALLIANCE_INSTRUMENTS: tuple[str, ...] = tuple(
    code for code, ins in INSTRUMENTS.items() if ins.construct == "alliance"
)
SYMPTOM_INSTRUMENTS: tuple[str, ...] = tuple(
    code for code, ins in INSTRUMENTS.items() if ins.construct == "symptoms"
)

APPOINTMENT_STATUSES: tuple[str, ...] = ("attended", "cancelled", "no_show", "cancelled_by_clinic")

# The columns of the reference export format (ARCHITECTURE.md, CONTRACT).
REFERENCE_MEASURE_COLUMNS: tuple[str, ...] = (
    "client_id",
    "clinician_id",
    "session_date",
    "session_number",
    "instrument",
    *ITEM_COLUMNS,
    "total",
)
REFERENCE_APPOINTMENT_COLUMNS: tuple[str, ...] = (
    "client_id",
    "clinician_id",
    "appointment_date",
    "status",
)


class UnknownInstrument(KeyError):
    pass


def get(code: str) -> Instrument:
    """The instrument for a code, or UnknownInstrument naming the allowed codes."""
    try:
        return INSTRUMENTS[code]
    except KeyError:
        raise UnknownInstrument(
            f"unknown instrument {code!r}; expected one of {', '.join(INSTRUMENTS)}"
        ) from None


def registry_table() -> list[dict[str, object]]:
    """One row per instrument, for loading into the warehouse (`instruments` relation)."""
    rows: list[dict[str, object]] = []
    for ins in INSTRUMENTS.values():
        rows.append(
            {
                "instrument": ins.code,
                "name": ins.name,
                "construct": ins.construct,
                "n_items": ins.n_items,
                "item_min": ins.item_min,
                "item_max": ins.item_max,
                "scoring": ins.scoring,
                "direction": ins.direction,
                "total_min": ins.total_min,
                "total_max": ins.total_max,
                "cutoff": ins.cutoff,
                "sd": ins.sd,
                "reliability": ins.reliability,
                "reliable_change": round(ins.reliable_change, 4),
                "citation": ins.citation,
            }
        )
    return rows


def markdown_table() -> str:
    """The registry as a Markdown table (docs/instruments.md embeds it; a test keeps it current)."""
    head = (
        "| code | construct | items (range) | scoring | total | direction | cutoff | SD | "
        "reliability | reliable change | source |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {i.code} | {i.construct} | {i.n_items} ({i.item_min:g}-{i.item_max:g}) | {i.scoring} "
        f"| {i.total_min:g}-{i.total_max:g} | {i.direction.replace('_', ' ')} | {i.cutoff:g} "
        f"| {i.sd:g} | {i.reliability:.2f} | {i.reliable_change:.2f} | {i.citation} |"
        for i in INSTRUMENTS.values()
    ]
    return "\n".join([head, *rows])
