"""The outbox: each digest's files (`OUT/<clinic_id>/<week_start>/<stem>.{html,txt,eml}`),
written whole, and rewritten without a client the right to erasure removed."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import os
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from html import escape as escape_html
from pathlib import Path

import duckdb

from pipelines.config import ClinicConfig
from pipelines.deliver.digest.model import Rendered, Week
from pipelines.deliver.digest.render import (
    build_message,
    render_clinician_digest,
    render_data_team_summary,
)
from pipelines.deliver.digest.select import build_data_team_summary, select_clinician_digests
from pipelines.deliver.mailer import DEFAULT_SENDER

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def file_stem(code: str) -> str:
    """A file name for a clinician code; odd codes get a stable hash instead of their text."""
    if _SAFE_NAME.fullmatch(code):
        return code
    return "clinician-" + hashlib.sha256(code.encode()).hexdigest()[:12]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_outbox(
    folder: Path,
    stem: str,
    rendered: Rendered,
    sender: str,
    recipient: str | None,
    message_id: str | None = None,
) -> EmailMessage:
    """The digest's three outbox files (HTML, text, the email as sent), each replaced whole."""
    folder.mkdir(parents=True, exist_ok=True)
    msg = build_message(rendered, sender, recipient)
    if message_id:
        msg.replace_header("Message-ID", message_id)
    _write_atomically(folder / f"{stem}.html", rendered.html_file.encode("utf-8"))
    _write_atomically(folder / f"{stem}.txt", rendered.text.encode("utf-8"))
    _write_atomically(folder / f"{stem}.eml", bytes(msg))
    return msg


OUTBOX_SUFFIXES = (".html", ".txt", ".eml")


@dataclass
class OutboxErasure:
    """Outbox files of digests that named an erased client (paths; no client code)."""

    rendered_again: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def _client_patterns(client_id: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """How a digest names a client (`templates/clinician.*.j2`): in the text version a line
    that starts `Client <code> - ` (flagged) or `  * Client <code>: ` (repaired), in the HTML
    `Client <code></strong>`. Matching only these, not any occurrence of the code, keeps a
    short code such as `12` from matching a session number, a score or an image's bytes."""
    code = re.escape(client_id)
    html_code = re.escape(escape_html(client_id))
    # an answer given since the last digest (`answers_digest.followup_text`): a line `  > ...`
    # that names the client as "with <code> on" or "marked <code>'s"
    return (
        re.compile(
            rf"^(?:  \* )?Client {code}(?: - |: )|^  > .*?(?:with|marked) {code}(?: on|'s)",
            re.MULTILINE,
        ),
        re.compile(rf"Client {html_code}</strong>|(?:with|marked) <strong>{html_code}</strong>"),
    )


def _names_client(folder: Path, stem: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    """Whether the digest `stem` in the outbox names the client: by its text version (the .txt
    file, else the email's text part), else by its HTML."""
    in_text, in_html = patterns
    txt, eml, page = (folder / f"{stem}{s}" for s in (".txt", ".eml", ".html"))
    if txt.is_file():
        return bool(in_text.search(txt.read_text(encoding="utf-8", errors="replace")))
    if eml.is_file():
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        if isinstance(part, EmailMessage):
            return bool(in_text.search(str(part.get_content())))
    if page.is_file():
        return bool(in_html.search(page.read_text(encoding="utf-8", errors="replace")))
    return False


def erase_from_outbox(
    conn: duckdb.DuckDBPyConnection,
    outbox: Path,
    configs: dict[str, ClinicConfig],
    clinic_id: str,
    client_id: str,
) -> OutboxErasure:
    """After a client's rows have left the warehouse: every digest of the clinic in `outbox`
    whose files name the client is rendered again from the warehouse for the same week and
    recipient, so it holds everyone else as before and keeps the Message-ID the ledger
    records; a digest no longer due (nobody left to report, no all-clear wanted), or one that
    cannot be rendered because the clinic has no valid config, is removed. Emails already
    sent are out of reach; this is the copy the pipeline keeps and clinics may collect."""
    done = OutboxErasure()
    clinic_dir = outbox / clinic_id
    if not clinic_dir.is_dir():
        return done
    patterns = _client_patterns(client_id)
    cfg = configs.get(clinic_id)
    for folder in sorted(p for p in clinic_dir.iterdir() if p.is_dir()):
        for tmp in folder.glob(".*.tmp"):  # an interrupted write's leftover, never delivered
            tmp.unlink(missing_ok=True)
        stems = sorted({p.stem for p in folder.iterdir() if p.suffix in OUTBOX_SUFFIXES})
        hits = [s for s in stems if _names_client(folder, s, patterns)]
        if not hits:
            continue
        try:
            start = dt.date.fromisoformat(folder.name)
        except ValueError:
            start = None
        due: dict[str, tuple[Rendered, str | None]] = {}
        team: Rendered | None = None
        if cfg is not None and start is not None:
            week = Week(start=start, end=start + dt.timedelta(days=7))
            for d in select_clinician_digests(conn, cfg, week):
                due[file_stem(d.clinician_id)] = (
                    render_clinician_digest(d),
                    cfg.clinicians.get(d.clinician_id),
                )
            team = render_data_team_summary(build_data_team_summary(conn, cfg, week))
        for stem in hits:
            rendered = team if stem == "_data_team" else due.get(stem, (None, None))[0]
            clean = rendered is not None and not (
                patterns[0].search(rendered.text) or patterns[1].search(rendered.html_file)
            )
            if rendered is None or not clean:
                for suffix in OUTBOX_SUFFIXES:
                    (folder / f"{stem}{suffix}").unlink(missing_ok=True)
                done.removed.append(folder / stem)
                continue
            eml = folder / f"{stem}.eml"
            old = email.message_from_bytes(eml.read_bytes()) if eml.is_file() else None
            write_outbox(
                folder,
                stem,
                rendered,
                str(old["From"]) if old and old["From"] else DEFAULT_SENDER,
                str(old["To"]) if old and old["To"] else None,
                str(old["Message-ID"]) if old and old["Message-ID"] else None,
            )
            done.rendered_again.append(folder / stem)
    return done
