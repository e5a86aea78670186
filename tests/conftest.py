"""Shared fixtures: real things in tmp_path (DuckDB files, Airflow homes), never mocks."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folders of the repository that tools write on their own (caches, the environment).
_TOOL_FOLDERS = frozenset(
    {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}
)
# The installation's places (pipelines.settings): a test that forgets to name one must not
# fall back to ./demo in the repository, or to a developer's own installation.
_PATH_VARIABLES = (
    "CONFIG_DIR", "LANDING", "INBOX", "WAREHOUSE", "SNAPSHOT", "OUTBOX", "DATA_DOCS", "STAGE",
    "ANSWERS",
)  # fmt: skip


def repository_files(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """Every file of the repository tree outside tool folders: path -> (size, mtime_ns)."""
    found: dict[str, tuple[int, int]] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in _TOOL_FOLDERS]
        for name in files:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def _tracked_files() -> frozenset[str]:
    done = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return frozenset(done.stdout.split("\0")) if done.returncode == 0 else frozenset()


@pytest.fixture(scope="session", autouse=True)
def _tests_write_only_in_temporary_folders(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Point the installation's defaults (ALLIANCE_WATCH_HOME and the per-place variables)
    into a temporary folder for the session, and fail the session if any file of the
    repository tree was added, changed or removed by it (e.g. a command run from the
    repository root that republished ./demo's snapshot); edits of files tracked by git are
    left to git."""
    home = tmp_path_factory.mktemp("alliance-watch-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALLIANCE_WATCH_HOME", str(home))
        for name in _PATH_VARIABLES:
            mp.delenv(f"ALLIANCE_WATCH_{name}", raising=False)
        before = repository_files()
        yield
        after = repository_files()
    # a tracked source file may be edited while the suite runs (git shows any test's write
    # there anyway); anything else added, changed or removed was written by the session
    tracked = _tracked_files()
    changed = sorted(
        p
        for p in before.keys() | after.keys()
        if before.get(p) != after.get(p) and not (p in tracked and p in before and p in after)
    )
    if changed:
        pytest.fail(
            "tests wrote into the repository tree (write only under tmp_path): "
            + ", ".join(changed[:20]),
            pytrace=False,
        )


@pytest.fixture
def reference_config_dir(tmp_path: Path) -> Path:
    """A config folder holding one clinic in the reference format with the 3-key config."""
    d = tmp_path / "config" / "clinics"
    d.mkdir(parents=True)
    (d / "ref_clinic.yaml").write_text(
        "clinic_id: ref_clinic\ntimezone: Europe/Berlin\nformat: reference\n", encoding="utf-8"
    )
    return tmp_path / "config"


REFERENCE_HEADER = (
    "client_id,clinician_id,session_date,session_number,instrument,"
    + ",".join(f"item_{i}" for i in range(1, 13))
    + ",total"
)


def reference_row(
    client: str,
    clinician: str,
    date: str,
    session: int,
    instrument: str,
    items: list[float | int | str],
    total: float | int | str = "",
) -> str:
    cells = [str(x) for x in items] + [""] * (12 - len(items))
    return ",".join([client, clinician, date, str(session), instrument, *cells, str(total)])


@pytest.fixture
def write_reference(tmp_path: Path):  # type: ignore[no-untyped-def]
    """write_reference(name, rows) -> path in landing/ref_clinic/."""
    landing = tmp_path / "landing" / "ref_clinic"
    landing.mkdir(parents=True, exist_ok=True)

    def _write(name: str, rows: list[str], header: str = REFERENCE_HEADER) -> Path:
        p = landing / name
        p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        return p

    return _write


def build_detected_warehouse(root: Path, seed: int, clinics: int) -> Path:
    """`alliance-watch generate` (40 clients a clinic, every session up to 2026-06-01) into
    `root`, ingested into `root/wh.duckdb` and detected: a realistic warehouse for tests."""
    from pipelines.detect.ruptures import detect
    from pipelines.ingest.run import ingest_all
    from pipelines.warehouse import open_warehouse
    from tests.e2e.stack import generate

    generate(root, seed=seed, clinics=clinics, clients=40, period="all")
    wh = root / "wh.duckdb"
    ingest_all(root / "config", root / "landing", wh)
    with open_warehouse(wh) as conn:
        detect(conn)
    return wh


# Headless Chromium as this machine kind allows it (Debian's package; no background network).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def reachable(port: int) -> bool:
    """Whether a service answers on 127.0.0.1:`port` (the production-profile tests need
    PostgreSQL and Redis there)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests leave screenshots for a person to look at: $ALLIANCE_WATCH_ARTIFACTS when
    set (outside the repository; CI can keep it), else a temporary folder. Never the tree."""
    chosen = os.environ.get("ALLIANCE_WATCH_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------ one SMTP server for every test


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every message (with its recipients) and can refuse the
    first `fail` ones with a temporary error."""

    def __init__(self, fail: int = 0) -> None:
        import threading

        self.fail = fail
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    @property
    def emails(self) -> list[EmailMessage]:
        with self.lock:
            return [m for _, m in self.messages]

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802 - aiosmtpd API
        import email
        import email.policy

        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                return "451 4.3.0 try again later"
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


@contextlib.contextmanager
def smtp_controller(mailbox: Mailbox, **options: Any) -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 delivering into `mailbox`, stopped on exit;
    `options` go to aiosmtpd's Controller (TLS, authentication)."""
    from aiosmtpd.controller import Controller

    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, Any]]:
    """(the mailbox, the SmtpSettings that reach it) for one test."""
    from pipelines.deliver.mailer import SmtpSettings

    mailbox = Mailbox()
    with smtp_controller(mailbox) as controller:
        yield (
            mailbox,
            SmtpSettings(
                host="127.0.0.1",
                port=controller.port,
                sender="digest@alliance.example",
                starttls=False,
                attempts=3,
                backoff_s=0.01,
                timeout_s=5,
            ),
        )
