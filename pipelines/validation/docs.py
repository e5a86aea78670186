"""Great Expectations Data Docs for validated files, with every value withheld."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

from pipelines.validation.engine import SAFE_RESULT_KEYS


def safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60].strip("._") or "file"
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _sanitize(results: Any) -> None:
    """Drop every value GX put into a result; keep only counts (in place)."""
    for r in results.results:
        r.result = {k: v for k, v in (r.result or {}).items() if k in SAFE_RESULT_KEYS}
        info = r.exception_info or {}
        if info.get("raised_exception"):
            r.exception_info = {
                "raised_exception": True,
                "exception_message": "expectation failed to run (details withheld)",
                "exception_traceback": None,
            }


def suite_result(
    results: list[Any], suite_name: str, run_name: str, run_time: dt.datetime
) -> tuple[Any, Any]:
    """(the suite-level GX result assembled from per-rule results, its store key)."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=run_name, run_time=run_time)
    good = sum(1 for r in results if r.success)
    batch_id = f"clinic_export-{suite_name}"
    suite_result = ExpectationSuiteValidationResult(
        success=good == len(results),
        results=results,
        suite_name=suite_name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": good,
            "unsuccessful_expectations": len(results) - good,
            "success_percent": 100.0 * good / len(results) if results else None,
        },
        meta={
            "run_id": run_id,
            "validation_time": run_time,
            "active_batch_definition": {
                "datasource_name": "clinic_export",
                "data_asset_name": suite_name,
            },
            "great_expectations_version": _gx_version(),
        },
        batch_id=batch_id,
    )
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
        run_id=run_id,
        batch_identifier=batch_id,
    )
    return suite_result, key


def _gx_version() -> str:
    import great_expectations as gx

    return str(gx.__version__)


_SITE = "alliance_watch"


_DOCS_CONTEXTS: dict[Path, Any] = {}


def _docs_context(docs_dir: Path) -> Any:
    """An ephemeral context whose results store and Data Docs site live under ``docs_dir``
    (one per folder per process: creating it costs more than writing a page)."""
    docs_dir = Path(docs_dir).resolve()  # GX needs an absolute base directory
    context = _DOCS_CONTEXTS.get(docs_dir)
    if context is not None:
        return context
    import great_expectations as gx

    docs_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    context.add_store(
        "sanitized_results",
        {
            "class_name": "ValidationResultsStore",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / "sanitized_results"),
            },
        },
    )
    context.validation_results_store_name = "sanitized_results"
    context.add_data_docs_site(
        site_name=_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / "site"),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    _DOCS_CONTEXTS[docs_dir] = context
    return context


def _page_path(docs_dir: Path, key: Any) -> Path:
    """Where the site builder writes the page of one validation result."""
    run_time = key.run_id.run_time.strftime("%Y%m%dT%H%M%S.%fZ")
    suite = key.expectation_suite_identifier.name
    return (
        docs_dir
        / "site"
        / "validations"
        / suite
        / key.run_id.run_name
        / run_time
        / f"{key.batch_identifier}.html"
    )


def write_docs(docs_dir: Path, suite_result: Any, key: Any, build: bool) -> Path:
    """Store the sanitized result under ``docs_dir``; render its page and the index if
    ``build`` (else ``build_data_docs`` renders them later). Returns the page's path."""
    context = _docs_context(docs_dir)
    context.validation_results_store.set(key, suite_result)
    if build:
        context.build_data_docs(site_names=[_SITE], resource_identifiers=[key])
    return _page_path(docs_dir, key)


def build_data_docs(docs_dir: Path) -> Path:
    """Render the Data Docs site of every result stored under ``docs_dir``; return the index.

    Call once at the end of a run after validating with ``build_docs=False``: rendering is the
    per-file cost that grows with the site, so a run renders it once instead of per file.
    """
    docs_dir = Path(docs_dir)
    context = _docs_context(docs_dir)
    context.build_data_docs(site_names=[_SITE])
    return docs_dir / "site" / "index.html"
