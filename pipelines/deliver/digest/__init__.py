"""Weekly digests: one per clinician (their flagged clients, with evidence and repair guidance)
and one data-quality summary per clinic data team; written to an outbox, sent over SMTP.

A run for date D covers sessions dated D-7 .. D-1 (``Week``). For each configured clinic it

* selects, per clinician, only that clinician's clients flagged in the week (``new`` when the
  alert episode opened that week, else ``ongoing``) and the episodes repaired that week;
* explains each flag in plain words with the numbers, draws a small trajectory chart and adds
  at most two repair-conversation prompts (``pipelines.deliver.guidance``);
* renders an email (plain text + HTML with the chart inline by Content-ID) and writes
  ``OUT/<clinic_id>/<week_start>/<clinician_id>.{html,txt,eml}`` (the .html file embeds the
  chart as a data URI so it opens anywhere);
* sends it where SMTP is configured and the clinic config has the clinician's address, and
  records every delivery in ``digest_deliveries``: a digest already sent is never sent again.

Clients appear by pseudonymous code only; every value is HTML-escaped by the template engine;
counts in the data-team summary below ``SMALL_CELL`` are shown as "<5".

The parts: ``model`` (the records), ``select`` (what each digest holds) with ``explain`` (a flag
in plain words), ``render`` (the email parts), ``outbox`` (the files, and their rewrite after an
erasure) and ``run`` (a whole run, sending and journaling).
"""

from pipelines.deliver.digest.explain import explain
from pipelines.deliver.digest.model import (
    DATA_TEAM,
    SEVERITY_RANK,
    ClinicianDigest,
    DataTeamSummary,
    Delivery,
    DigestRunSummary,
    FlaggedClient,
    Rendered,
    RepairedClient,
    Week,
)
from pipelines.deliver.digest.outbox import OUTBOX_SUFFIXES, OutboxErasure, erase_from_outbox
from pipelines.deliver.digest.render import (
    build_message,
    render_clinician_digest,
    render_data_team_summary,
)
from pipelines.deliver.digest.run import (
    deliver_clinic,
    digest_workers,
    record_deliveries,
    run_weekly_digest,
)
from pipelines.deliver.digest.select import build_data_team_summary, select_clinician_digests

__all__ = [
    "DATA_TEAM",
    "OUTBOX_SUFFIXES",
    "SEVERITY_RANK",
    "ClinicianDigest",
    "DataTeamSummary",
    "Delivery",
    "DigestRunSummary",
    "FlaggedClient",
    "OutboxErasure",
    "Rendered",
    "RepairedClient",
    "Week",
    "build_data_team_summary",
    "build_message",
    "deliver_clinic",
    "digest_workers",
    "erase_from_outbox",
    "explain",
    "record_deliveries",
    "render_clinician_digest",
    "render_data_team_summary",
    "run_weekly_digest",
    "select_clinician_digests",
]
