"""Immediate notice of new high-severity alert episodes, for clinics that opt in
(`notifications.immediate_high_severity`). Everything else waits for the weekly digest.

Reads the analyst snapshot (published right after detection), so it never contends for the live
warehouse file. A small JSON ledger per clinic (`<home>/notices/<clinic_id>.immediate.json`)
holds the episodes already announced, so a rerun never resends; `alliance-watch forget` drops
the erased client's episodes from it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.detect.ids import is_clients_episode
from pipelines.settings import AnswerSettings, Paths, answer_settings_from_env

if TYPE_CHECKING:
    from pipelines.config import ClinicConfig


def notices_dir(paths: Paths) -> Path:
    return paths.home / "notices"


def _ledger_path(folder: Path, clinic_id: str) -> Path:
    return folder / f"{clinic_id}.immediate.json"


def _announced(path: Path) -> set[str]:
    return set(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else set()


def _save(path: Path, announced: set[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(sorted(announced)), encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _ledger_lock(folder: Path) -> Iterator[None]:
    """One writer of the notice ledgers at a time: a notice run (read the episodes, send,
    record) and an erasure never interleave, so an erased client's episodes are neither
    written back nor announced again from what was read before the erasure."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def erase_from_notices(folder: Path, clinic_id: str, client_id: str) -> int:
    """Drop one client's episodes from the clinic's immediate-notice ledger (erasure); return
    how many. Episode ids start `clinic:client:`, their colons escaped
    (`pipelines/detect/ids.py`), so the prefix is exact; it also holds for a named treatment
    episode (`clinic:client:episode:instrument:session`), which a split from the right missed."""
    path = _ledger_path(folder, clinic_id)
    if not path.exists():
        return 0
    with _ledger_lock(folder):
        announced = _announced(path)
        theirs = {e for e in announced if is_clients_episode(e, clinic_id, client_id)}
        if theirs:
            _save(path, announced - theirs)
    return len(theirs)


def high_severity_message(
    clinic_id: str,
    episodes: list[dict[str, Any]],
    sender: str,
    to: str,
    answer_settings: AnswerSettings | None = None,
) -> EmailMessage:
    """One message per clinician: pseudonymous client codes, instrument, session; no scores;
    under each client the three one-click answer links when `answer_settings` sets them up."""
    from pipelines.deliver.answer_links import links_for

    today = dt.datetime.now(dt.UTC).date()
    msg = EmailMessage()
    msg["Subject"] = f"[Alliance Watch] {len(episodes)} new high-severity alliance flag(s)"
    msg["From"] = sender
    msg["To"] = to
    lines = [f"Clinic {clinic_id}: new high-severity flags for clients in your caseload:", ""]
    for e in episodes:
        lines.append(f"  client {e['client_id']}: {e['instrument']}, session {e['opened_session']}")
        links = (
            links_for(answer_settings, str(e["alert_episode_id"]), str(e["clinician_id"]), today)
            if answer_settings is not None
            else ()
        )
        if links:
            lines.append("    Was this a rupture? One click answers (never required):")
            lines += [f"    - {label}: {url}" for label, url in links]
    lines += ["", "The evidence and repair guidance follow in your weekly digest."]
    msg.set_content("\n".join(lines))
    return msg


def notify_high_severity(paths: Paths, clients: list[tuple[str, str]] | None) -> dict[str, Any]:
    """Announce ongoing high-severity episodes not yet announced, for the given clients (None =
    all) of opted-in clinics, to each client's clinician. Returns counts per clinic."""
    from pipelines.config import load_clinic_configs

    configs, _ = load_clinic_configs(paths.config_dir)
    opted = {c: cfg for c, cfg in configs.items() if cfg.notifications.immediate_high_severity}
    if not opted:
        return {}
    with _ledger_lock(notices_dir(paths)):
        return _notify(paths, opted, clients)


def _notify(
    paths: Paths, opted: dict[str, ClinicConfig], clients: list[tuple[str, str]] | None
) -> dict[str, Any]:
    from pipelines.deliver.mailer import send, smtp_settings_from_env
    from pipelines.warehouse import backend

    con = backend(paths.warehouse).reader(paths.snapshot)
    if con is None:
        return {}
    try:
        eps = con.execute(
            """
            select alert_episode_id, clinic_id, client_id, clinician_id, instrument,
                   opened_session
            from alert_episodes
            where max_severity = 'high' and status = 'ongoing'
              and list_contains(?, clinic_id)
            order by clinic_id, clinician_id, client_id
            """,
            [sorted(opted)],
        ).df()
    finally:
        con.close()
    if clients is not None:
        wanted = {f"{a}\x1f{b}" for a, b in clients}
        eps = eps[(eps.clinic_id + "\x1f" + eps.client_id).isin(wanted)]
    settings = smtp_settings_from_env()
    out: dict[str, Any] = {}
    for clinic_id, group in eps.groupby("clinic_id"):
        ledger = _ledger_path(notices_dir(paths), str(clinic_id))
        done = _announced(ledger)
        fresh = group[~group.alert_episode_id.isin(done)]
        sent, unsent = 0, 0
        for clinician_id, rows in fresh.groupby("clinician_id"):
            to = opted[str(clinic_id)].clinicians.get(str(clinician_id))
            if settings is None or not to:
                unsent += len(rows)
                continue
            msg = high_severity_message(
                str(clinic_id),
                [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")],
                settings.sender,
                to,
                answer_settings_from_env(),
            )
            if send(settings, msg, [to]).ok:
                done |= set(rows.alert_episode_id)
                sent += len(rows)
            else:
                unsent += len(rows)
        _save(ledger, done)
        out[str(clinic_id)] = {"announced": sent, "not_sent": unsent}
    return out
