"""Where things live. One root (ALLIANCE_WATCH_HOME) with conventional sub-folders, each
overridable by its own environment variable. Read at call time, never at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import AllianceWatchError


@dataclass(frozen=True)
class Paths:
    home: Path
    config_dir: Path  # holds clinics/<clinic_id>.yaml
    landing: Path  # landing/<clinic_id>/ files from clinics
    inbox: Path  # inbox/<clinic_id>.ready markers
    warehouse: Path  # the live DuckDB file (single writer)
    snapshot: Path  # the read-only analyst snapshot
    outbox: Path  # rendered digests
    data_docs: Path  # GX Data Docs site
    stage: Path  # staged Parquet between prepare and load
    answers: Path  # clinicians' answers to alerts: new/<answer>.json, answers.ready marker

    def ensure(self) -> Paths:
        for p in (self.landing, self.inbox, self.outbox, self.data_docs, self.stage, self.answers):
            p.mkdir(parents=True, exist_ok=True)
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        return self


def paths_from_env(env: dict[str, str] | None = None) -> Paths:
    e = os.environ if env is None else env
    home = Path(e.get("ALLIANCE_WATCH_HOME", "./demo")).resolve()

    def get(name: str, default: Path) -> Path:
        value = e.get(f"ALLIANCE_WATCH_{name}")
        return Path(value).resolve() if value else default

    return Paths(
        home=home,
        config_dir=get("CONFIG_DIR", home / "config"),
        landing=get("LANDING", home / "landing"),
        inbox=get("INBOX", home / "inbox"),
        warehouse=get("WAREHOUSE", home / "warehouse" / "alliance.duckdb"),
        snapshot=get("SNAPSHOT", home / "warehouse" / "snapshot" / "alliance_snapshot.duckdb"),
        outbox=get("OUTBOX", home / "outbox"),
        data_docs=get("DATA_DOCS", home / "data_docs"),
        stage=get("STAGE", home / "stage"),
        answers=get("ANSWERS", home / "answers"),
    )


def run_stage_dir(paths: Paths, clinic_id: str, run_id: str) -> Path:
    """Where one ingest run of a clinic stages its Parquet (removed when the run ends)."""
    return paths.stage / clinic_id / str(run_id).replace(":", "_").replace("+", "_")


# --------------------------------------------------------------------------------------------
# answer links (issue 19): the signing secrets, where a link points, how long it holds

ANSWER_LINK_DAYS = 28  # a link in a digest stays valid four weekly digests long
_MIN_SECRET_CHARS = 16


@dataclass(frozen=True)
class AnswerSettings:
    """The keys that sign answer links: `secrets[0]` signs, every one verifies (during a
    rotation the previous secret still verifies the links already sent). `base_url` is where
    the links point (the API server's `/answers`); None: digests carry no links."""

    secrets: tuple[bytes, ...]
    base_url: str | None
    link_days: int = ANSWER_LINK_DAYS

    @property
    def enabled(self) -> bool:
        return bool(self.secrets) and self.base_url is not None


def _secret(e: Mapping[str, str], name: str) -> bytes | None:
    """A secret from the environment, or from the file its `_FILE` variable names (a Docker or
    Kubernetes secret mounted as a file); surrounding whitespace is not part of it."""
    from pipelines.errors import ConfigError

    value = e.get(name, "").strip()
    file_name = e.get(f"{name}_FILE", "").strip()
    if not value and file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                "environment", f"{name}_FILE", f"cannot read {file_name}: {exc.strerror}"
            ) from None
    if not value:
        return None
    if len(value) < _MIN_SECRET_CHARS:
        raise ConfigError(
            "environment",
            name,
            f"a signing secret needs at least {_MIN_SECRET_CHARS} characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
        )
    return value.encode("utf-8")


def answer_settings_from_env(env: Mapping[str, str] | None = None) -> AnswerSettings:
    """ALLIANCE_WATCH_ANSWER_SECRET (or _FILE) signs; ALLIANCE_WATCH_ANSWER_SECRET_PREVIOUS (or
    _FILE) still verifies during a rotation. ALLIANCE_WATCH_ANSWER_BASE_URL, else the API
    server's AIRFLOW__API__BASE_URL + /answers. ALLIANCE_WATCH_ANSWER_LINK_DAYS (default 28).
    Read at call time: the endpoint picks up a rotated secret without a restart."""
    from pipelines.errors import ConfigError

    e: Mapping[str, str] = os.environ if env is None else env
    secrets = tuple(
        s
        for s in (
            _secret(e, "ALLIANCE_WATCH_ANSWER_SECRET"),
            _secret(e, "ALLIANCE_WATCH_ANSWER_SECRET_PREVIOUS"),
        )
        if s is not None
    )
    base = e.get("ALLIANCE_WATCH_ANSWER_BASE_URL", "").strip()
    if not base and e.get("AIRFLOW__API__BASE_URL", "").strip():
        base = e["AIRFLOW__API__BASE_URL"].strip().rstrip("/") + "/answers"
    days_text = e.get("ALLIANCE_WATCH_ANSWER_LINK_DAYS", "").strip()
    if days_text and not (days_text.isdigit() and 1 <= int(days_text) <= 366):
        raise ConfigError(
            "environment",
            "ALLIANCE_WATCH_ANSWER_LINK_DAYS",
            f"expected a whole number of days 1-366, got {days_text!r}",
        )
    return AnswerSettings(
        secrets=secrets,
        base_url=base.rstrip("/") or None,
        link_days=int(days_text) if days_text else ANSWER_LINK_DAYS,
    )


# An ingest run prepares a clinic's files below this size together in one task (its worker
# processes share them) and gives each larger file a task of its own (docs/operations.md).
DEFAULT_PREPARE_FANOUT_BYTES = 16 * 2**20


def prepare_fanout_bytes(env: dict[str, str] | None = None) -> int:
    """`ALLIANCE_WATCH_PREPARE_FANOUT_BYTES` (default 16 MB): the size from which a delivered
    file is prepared in an Airflow task of its own rather than with the clinic's other files.
    A positive whole number of bytes; anything else is refused by name."""
    e = os.environ if env is None else env
    raw = e.get("ALLIANCE_WATCH_PREPARE_FANOUT_BYTES", "").strip()
    if not raw:
        return DEFAULT_PREPARE_FANOUT_BYTES
    if not raw.isdigit() or int(raw) <= 0:
        raise AllianceWatchError(
            f"ALLIANCE_WATCH_PREPARE_FANOUT_BYTES must be a positive number of bytes, not {raw!r}"
        )
    return int(raw)
