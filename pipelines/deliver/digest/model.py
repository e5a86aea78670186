"""What a weekly digest run works with: the week, each clinician's digest and the data team's
summary as selected, a rendered email, and what became of each delivery."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.deliver.answer_links import AnswerFollowup
from pipelines.deliver.charts import Chart
from pipelines.deliver.guidance import Guidance

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


DATA_TEAM = ""  # clinician_id of the data-team summary in the ledger


@dataclass(frozen=True)
class Week:
    """Sessions dated start <= session_date < end; end is the run date."""

    start: dt.date
    end: dt.date

    @classmethod
    def before(cls, as_of: dt.date) -> Week:
        return cls(start=as_of - dt.timedelta(days=7), end=as_of)

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()} to {self.last_day.isoformat()}"


@dataclass(frozen=True)
class FlaggedClient:
    """A client flagged in the week: the lead flag's severity, every reason, each flag in plain
    words, at most two repair prompts, the trajectory chart and the answer links."""

    client_id: str
    severity: str  # high | medium | low
    status: str  # new | ongoing
    instruments: tuple[str, ...]
    reasons: tuple[str, ...]
    why: tuple[str, ...]
    guidance: tuple[Guidance, ...]
    chart: Chart | None
    last_session: int
    # (label, URL) of the three one-click answers (pipelines.deliver.answer_links); () when not set up
    answer_links: tuple[tuple[str, str], ...] = ()
    alert_episode_id: str = ""


@dataclass(frozen=True)
class RepairedClient:
    """A client whose alert episode closed in the week, back to their own baseline."""

    client_id: str
    instrument: str
    text: str


@dataclass(frozen=True)
class ClinicianDigest:
    """One clinician's digest for one clinic and week (flagged clients, repairs, answers given)."""

    clinic_id: str
    clinician_id: str
    week: Week
    flagged: tuple[FlaggedClient, ...]
    repaired: tuple[RepairedClient, ...]
    answers: tuple[AnswerFollowup, ...] = ()  # answers given since the last digest

    @property
    def new(self) -> tuple[FlaggedClient, ...]:
        return tuple(c for c in self.flagged if c.status == "new")

    @property
    def ongoing(self) -> tuple[FlaggedClient, ...]:
        """Flagged before this week and still flagged, worsened ones included."""
        return tuple(c for c in self.flagged if c.status in ("ongoing", "worsened"))

    @property
    def worsened(self) -> tuple[FlaggedClient, ...]:
        """Episodes whose severity escalated this week (a re-alert)."""
        return tuple(c for c in self.flagged if c.status == "worsened")

    @property
    def is_all_clear(self) -> bool:
        return not self.flagged and not self.repaired and not self.answers


@dataclass(frozen=True)
class DataTeamSummary:
    """A clinic's data-quality week; counts below `SMALL_CELL` are already shown as "<5"."""

    clinic_id: str
    week: Week
    files_received: int
    files_by_status: tuple[tuple[str, int], ...]
    rejected_by_reason: tuple[tuple[str, int], ...]
    rows_in: str
    rows_loaded: str
    rows_quarantined: str
    rows_duplicate: str
    quarantined_by_reason: tuple[tuple[str, str], ...]
    stale_feeds: tuple[str, ...]
    clients_newly_flagged: str
    config_note: str | None = None
    answer_rate: str | None = None  # clinicians' answers to the last four weeks' alerts
    # the weeks whose flag threshold the clinic's alert ceiling raised (no budget set)
    ceiling_note: str | None = None
    # alliance sessions detection leaves out until their date or number is corrected (dated
    # after a higher-numbered session of the same series; detect_excluded_sessions), one line
    # each, as the last detection found them, whatever week they were delivered in
    excluded_sessions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rendered:
    """A digest as email parts, ready to write to the outbox and send."""

    subject: str
    text: str
    html_email: str  # charts referenced as cid:
    html_file: str  # charts embedded as data: URIs
    images: tuple[tuple[str, bytes], ...]  # (content id without <>, png)


@dataclass(frozen=True)
class Delivery:
    """What became of one digest due in a run (no address, no client code)."""

    clinic_id: str
    clinician_id: str  # '' for the data-team summary
    kind: str  # clinician | data_team
    status: str  # sent | failed | written | already_sent
    attempts: int
    outbox_path: Path | None
    n_clients: int
    error: str | None = None


@dataclass
class DigestRunSummary:
    """What a run did; `deliveries` has one row per digest due (sent, written, failed, skipped)."""

    as_of: dt.date
    week_start: dt.date
    deliveries: list[Delivery] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)
    # clinics with flags in the week but no valid config: nothing can be addressed or rendered
    # for them (no clinician addresses, no timezone), so they are named here, not dropped
    unconfigured_clinics: list[str] = field(default_factory=list)

    def count(self, status: str, kind: str | None = None) -> int:
        return sum(
            1 for d in self.deliveries if d.status == status and (kind is None or d.kind == kind)
        )

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def written(self) -> int:
        return self.count("written")

    @property
    def already_sent(self) -> int:
        return self.count("already_sent")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able counts (for an Airflow XCom or a log line): no addresses, no client codes."""
        return {
            "as_of": self.as_of.isoformat(),
            "week_start": self.week_start.isoformat(),
            "due": len(self.deliveries),
            "sent": self.sent,
            "written": self.written,
            "failed": self.failed,
            "already_sent": self.already_sent,
            "clinician_digests": sum(1 for d in self.deliveries if d.kind == "clinician"),
            "data_team_summaries": sum(1 for d in self.deliveries if d.kind == "data_team"),
            "config_errors": len(self.config_errors),
            "unconfigured_clinics": list(self.unconfigured_clinics),
        }

    def line(self) -> str:
        return (
            f"digests for sessions {Week.before(self.as_of).label}: "
            f"{len(self.deliveries)} due, {self.sent} sent, {self.written} written only, "
            f"{self.failed} failed, {self.already_sent} already sent"
        )
