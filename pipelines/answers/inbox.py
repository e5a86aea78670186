"""The answers inbox: one file per answer, written atomically and durably, then a marker.

The endpoint (`pipelines.answers.app`) never opens the warehouse; it drops each answer here:

    <answers>/new/<time_ns>-<answer_id>.json    one answer (written to a temporary name, fsynced,
                                                 renamed, and the folder fsynced)
    <answers>/answers.ready                      the marker the `ingest_feedback` watcher consumes

`pipelines.answers.load` reads `new/`, loads what it found in one transaction and only then
removes those files, so an answer is loaded exactly once however often the marker fires.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipelines.answers.tokens import AnswerClaim
from pipelines.detect.ids import is_clients_episode

MARKER = "answers.ready"


@dataclass(frozen=True)
class InboxAnswer:
    answer_id: str
    alert_episode_id: str
    clinician_id: str
    answer: str
    answered_at: dt.datetime
    path: Path


def new_dir(answers: Path) -> Path:
    return answers / "new"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append(answers: Path, claim: AnswerClaim, now: dt.datetime | None = None) -> str:
    """Store one answer durably (it survives a crash once this returns) and raise the marker;
    returns the answer's id. The token itself is never stored."""
    folder = new_dir(answers)
    folder.mkdir(parents=True, exist_ok=True)
    when = now or dt.datetime.now(dt.UTC)
    answer_id = uuid.uuid4().hex
    record = {
        "answer_id": answer_id,
        "alert_episode_id": claim.alert_episode_id,
        "clinician_id": claim.clinician_id,
        "answer": claim.answer.value,
        "answered_at": when.isoformat(),
    }
    name = f"{time_ns_of(when):020d}-{answer_id}.json"
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(record).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, folder / name)
    _fsync_dir(folder)
    # the marker after the answer: whatever run the marker starts finds the answer in place
    (answers / MARKER).touch()
    return answer_id


def time_ns_of(when: dt.datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


def pending(answers: Path) -> list[InboxAnswer]:
    """Every answer waiting in the inbox, oldest first (temporary files are not answers yet)."""
    folder = new_dir(answers)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("[0-9]*.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        out.append(
            InboxAnswer(
                answer_id=str(r["answer_id"]),
                alert_episode_id=str(r["alert_episode_id"]),
                clinician_id=str(r["clinician_id"]),
                answer=str(r["answer"]),
                answered_at=dt.datetime.fromisoformat(r["answered_at"]),
                path=path,
            )
        )
    return out


def remove(answers: Path, done: list[InboxAnswer]) -> None:
    """Remove answers already committed to the warehouse (a crash before this only means the
    next load finds them already there and skips them)."""
    # unlinks in parallel: on a filesystem that discards freed blocks each one waits, and the
    # waits overlap (benchmarks/README.md, answers)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda a: a.path.unlink(missing_ok=True), done))
    if done:
        _fsync_dir(new_dir(answers))


def erase(answers: Path, clinic_id: str, client_id: str) -> int:
    """Remove one client's answers still waiting in the inbox (right to erasure); returns how
    many. Episode ids start `clinic:client:`, their colons escaped (`pipelines/detect/ids.py`):
    client 'a' no longer takes client 'a:b''s answers with it."""
    theirs = [
        a for a in pending(answers) if is_clients_episode(a.alert_episode_id, clinic_id, client_id)
    ]
    remove(answers, theirs)
    return len(theirs)
