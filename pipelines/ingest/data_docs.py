"""One Great Expectations Data Docs build at a time, shared by every ingest run that wants one.

Rendering the site costs CPU that grows with it (every result stored so far); with many
clinics delivering at once, one build per ingest run would render the whole site many times
side by side, on the cores the loads and detection need. So a run asks for a build (`wanted`)
and builds only if no build is running; the build in progress sees the request when it ends
and builds once more, so the site always ends up holding every result written before a
request, with at most one build running and one more queued however many runs ask.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
LOCK = ".build.lock"
WANTED = ".build.wanted"


def build_when_wanted(docs_dir: Path, build: Callable[[], str | None]) -> str | None:
    """Ask for a build of the site in `docs_dir` and run `build` while builds are wanted and
    nobody else is building. Returns `build`'s result, or None when the build running in
    another process takes this request over (it builds again after its current build).

    Correct without a wait: a request is written before the lock is tried; the builder removes
    the request before it builds and looks for a new one after it has let go of the lock."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / WANTED).touch()
    result = None
    while (docs_dir / WANTED).exists():
        with (docs_dir / LOCK).open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("Data Docs: a build is running; it builds again for this request")
                return result
            try:
                with contextlib.suppress(FileNotFoundError):
                    (docs_dir / WANTED).unlink()
                try:
                    result = build()
                except BaseException:
                    (docs_dir / WANTED).touch()  # the requests taken over stay wanted
                    raise
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    return result


def publish_data_docs(docs_dir: Path | None) -> str | None:
    """Render the GX Data Docs site once for everything validated into `docs_dir`."""
    if docs_dir is None or not (Path(docs_dir) / "sanitized_results").exists():
        return None
    from pipelines.validation import build_data_docs

    return str(build_data_docs(Path(docs_dir)))
