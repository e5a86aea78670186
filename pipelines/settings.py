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


# ---- the warehouse backend ------------------------------------------------------------------
BACKEND_ENV = "ALLIANCE_WATCH_WAREHOUSE_BACKEND"  # embedded (default) | ducklake
CATALOG_ENV = "ALLIANCE_WATCH_DUCKLAKE_CATALOG"  # a libpq string for the DuckLake catalog
DATA_ENV = "ALLIANCE_WATCH_DUCKLAKE_DATA"  # a folder every worker sees, for its Parquet data
BACKENDS = ("embedded", "ducklake")


@dataclass(frozen=True)
class WarehouseSettings:
    """How the warehouse is reached: ``backend`` picks the implementation (the embedded DuckDB
    file, or DuckLake with ``catalog`` and ``data``); the rest tunes DuckDB."""

    backend: str = "embedded"
    catalog: str = ""
    data: str = ""
    sql_dir: Path = Path(__file__).resolve().parents[1] / "sql"
    memory_limit: str = "512MB"  # per warehouse connection; DuckDB spills to disk beyond it
    load_memory_limit: str = "256MB"  # while `ingest` loads, beside the preparing workers
    load_threads: int = 1
    lock_timeout_s: float = 60.0  # how long a writer waits for the embedded file's lock
    clinic_snapshots: bool = False  # per-clinic analyst snapshots

    @property
    def single_writer(self) -> bool:
        """One process at a time may open the warehouse (the embedded file)."""
        return self.backend == "embedded"


def warehouse_settings(env: Mapping[str, str] | None = None) -> WarehouseSettings:
    """The warehouse settings from the environment (ALLIANCE_WATCH_*); an unknown backend is a
    ConfigError-like ValueError naming the variable."""
    e = os.environ if env is None else env
    backend = e.get(BACKEND_ENV, "").strip().lower() or "embedded"
    if backend not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={backend!r}: expected one of {', '.join(BACKENDS)}")
    defaults = WarehouseSettings()
    return WarehouseSettings(
        backend=backend,
        catalog=e.get(CATALOG_ENV, "").strip(),
        data=e.get(DATA_ENV, "").strip(),
        sql_dir=Path(e.get("ALLIANCE_WATCH_SQL_DIR") or defaults.sql_dir),
        memory_limit=e.get("ALLIANCE_WATCH_DUCKDB_MEMORY", defaults.memory_limit),
        load_memory_limit=e.get("ALLIANCE_WATCH_LOAD_MEMORY", defaults.load_memory_limit),
        load_threads=int(e.get("ALLIANCE_WATCH_LOAD_THREADS", defaults.load_threads)),
        lock_timeout_s=float(e.get("ALLIANCE_WATCH_LOCK_TIMEOUT_S", defaults.lock_timeout_s)),
        clinic_snapshots=_flag(e.get("ALLIANCE_WATCH_CLINIC_SNAPSHOTS", "")),
    )


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes")


# ---- processes ------------------------------------------------------------------------------
# Parts of ~115k reference rows keep one part's peak memory through GX in the hundreds of MB
# (the part size measured best is in benchmarks/README.md).
DEFAULT_PART_BYTES = 6 * 1024 * 1024


def part_bytes(env: Mapping[str, str] | None = None) -> int:
    """The size a large CSV is cut into for preparing (ALLIANCE_WATCH_PART_BYTES, else 6 MB)."""
    e = os.environ if env is None else env
    return int(e.get("ALLIANCE_WATCH_PART_BYTES", DEFAULT_PART_BYTES))


def workers_wanted(name: str, env: Mapping[str, str] | None = None) -> int | None:
    """A positive process count set in ALLIANCE_WATCH_<name> (PREPARE_WORKERS, DIGEST_WORKERS),
    or None when unset or not a positive whole number."""
    e = os.environ if env is None else env
    text = e.get(f"ALLIANCE_WATCH_{name}", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def prepare_slots(env: Mapping[str, str] | None = None) -> int:
    """Slots of the Airflow pool `ingest_prepare` (how many `prepare` tasks run at once):
    ALLIANCE_WATCH_PREPARE_SLOTS, else the machine's cores. Preparing is CPU-bound; more at
    once only queue for the cores, and would hold executor slots that loads need."""
    return workers_wanted("PREPARE_SLOTS", env) or os.cpu_count() or 1


def prepare_nice(env: Mapping[str, str] | None = None) -> int:
    """How much a prepare worker lowers its priority (ALLIANCE_WATCH_PREPARE_NICE, else 5)."""
    e = os.environ if env is None else env
    return int(e.get("ALLIANCE_WATCH_PREPARE_NICE", "5"))


# ---- mail ----------------------------------------------------------------------------------
SMTP_PREFIX = "ALLIANCE_WATCH_SMTP_"
OPS_EMAIL_ENV = "ALLIANCE_WATCH_OPS_EMAIL"


def smtp_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ALLIANCE_WATCH_SMTP_* settings by name without the prefix (HOST, PORT, USER, ...);
    `pipelines.deliver.mailer.SmtpSettings.from_env` checks and types them."""
    e = os.environ if env is None else env
    return {k.removeprefix(SMTP_PREFIX): v for k, v in e.items() if k.startswith(SMTP_PREFIX)}


def ops_email(env: Mapping[str, str] | None = None) -> str:
    """The operations address (ALLIANCE_WATCH_OPS_EMAIL), or empty."""
    e = os.environ if env is None else env
    return e.get(OPS_EMAIL_ENV, "").strip()


def detect_memory(env: Mapping[str, str] | None = None) -> str:
    """DuckDB's memory cap while detection runs (ALLIANCE_WATCH_DETECT_MEMORY, else 4GB)."""
    e = os.environ if env is None else env
    return e.get("ALLIANCE_WATCH_DETECT_MEMORY", "4GB")


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
