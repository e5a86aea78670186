"""A digest as email parts (plain text, HTML with the charts by Content-ID, HTML with the charts
embedded) from the templates in pipelines/deliver/templates/; every value HTML-escaped."""

from __future__ import annotations

import base64
import email.policy
import email.utils
import hashlib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2

from pipelines.deliver.cells import SMALL_CELL
from pipelines.deliver.digest.model import ClinicianDigest, DataTeamSummary, Rendered

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.FileSystemLoader(_TEMPLATES)
    html = jinja2.Environment(
        loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    text = jinja2.Environment(
        loader=loader,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return html, text


_HTML_ENV, _TEXT_ENV = _environments()


# RFC 5322 allows 998 characters on a header line (78 is a recommendation)
_HEADERS_UNFOLDED = email.policy.default.clone(max_line_length=998)


def _subject(d: ClinicianDigest) -> str:
    """Names the clinic (a clinician working at two clinics gets two digests and tells them
    apart), then the counts; never a client code."""
    head = f"Alliance Watch {d.clinic_id}"
    if d.is_all_clear:
        return f"{head}: all clear (week of {d.week.start.isoformat()})"
    parts = [f"{len(d.new)} new", f"{len(d.ongoing)} ongoing"]
    if d.repaired:
        parts.append(f"{len(d.repaired)} repaired")
    if d.answers:
        parts.append(f"{len(d.answers)} answered")
    return f"{head}: {', '.join(parts)} (week of {d.week.start.isoformat()})"


def render_clinician_digest(d: ClinicianDigest) -> Rendered:
    """The digest as email parts: plain text, HTML with cid: images, HTML with data: images."""
    charted = [c for c in d.flagged if c.chart is not None]
    tag = hashlib.sha256(f"{d.clinic_id}/{d.clinician_id}/{d.week.start}".encode()).hexdigest()[:12]
    cids = {c.client_id: f"chart{i}.{tag}@alliance-watch" for i, c in enumerate(charted)}
    images = tuple((cids[c.client_id], c.chart.png) for c in charted if c.chart is not None)
    data_uris = {
        c.client_id: "data:image/png;base64," + base64.b64encode(c.chart.png).decode("ascii")
        for c in charted
        if c.chart is not None
    }
    subject = _subject(d)
    ctx: dict[str, Any] = {"d": d, "subject": subject}
    html_email = _HTML_ENV.get_template("clinician.html.j2").render(
        **ctx, image_src={k: f"cid:{v}" for k, v in cids.items()}
    )
    html_file = _HTML_ENV.get_template("clinician.html.j2").render(**ctx, image_src=data_uris)
    text = _TEXT_ENV.get_template("clinician.txt.j2").render(**ctx)
    return Rendered(subject, text, html_email, html_file, images)


def render_data_team_summary(s: DataTeamSummary) -> Rendered:
    """The data team's summary as email parts (no images)."""
    subject = f"Alliance Watch data: {s.clinic_id} (week of {s.week.start.isoformat()})"
    ctx: dict[str, Any] = {"s": s, "subject": subject, "small_cell": SMALL_CELL}
    html = _HTML_ENV.get_template("data_team.html.j2").render(**ctx)
    text = _TEXT_ENV.get_template("data_team.txt.j2").render(**ctx)
    return Rendered(subject, text, html, html, ())


def build_message(r: Rendered, sender: str, recipient: str | None) -> EmailMessage:
    """A multipart/alternative email (text, then HTML with the charts as related parts)."""
    msg = EmailMessage()
    msg["Subject"] = r.subject
    msg["From"] = sender
    if recipient:
        msg["To"] = recipient
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain="alliance-watch.local")
    msg.set_content(r.text)
    msg.add_alternative(r.html_email, subtype="html")
    html_part = msg.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    for cid, png in r.images:
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>")
    # the parts are encoded by now (base64 in 76-character lines); what is left to write are
    # headers, and a subject that fits on a line of its own is folded by the standard library
    # right after "Subject:", which readers then show with a leading space
    msg.policy = _HEADERS_UNFOLDED
    return msg
