"""The digest as a person sees it: the outbox HTML opened in headless Chromium at 640 px."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.deliver.digest import run_weekly_digest
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_digest import AS_OF, CLINIC, make_warehouse

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fx = make_warehouse(tmp_path_factory.mktemp("render"))
    run_weekly_digest(fx.warehouse, fx.config_dir, AS_OF, fx.out, None)
    return fx.out / CLINIC / "2024-05-06"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("stem", ["T01", "T02", "_data_team"])
def test_digest_html_renders_cleanly_at_640px(
    outbox: Path, browser, stem: str, artifacts_dir: Path
) -> None:
    page = browser.new_page(viewport={"width": 640, "height": 900})  # type: ignore[attr-defined]
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: problems.append("dialog: " + d.message))  # a planted script ran
    page.goto((outbox / f"{stem}.html").as_uri())
    page.wait_for_load_state("load")

    assert problems == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 640
    assert page.evaluate("document.body.scrollWidth") <= 640
    # every chart decoded, fits the column and carries alt text
    images = page.evaluate(
        "Array.from(document.images).map(i => ({w: i.naturalWidth, shown: i.getBoundingClientRect().right, alt: i.alt}))"
    )
    if stem == "T01":
        assert len(images) == 3
    for img in images:
        assert img["w"] > 0 and img["shown"] <= 640 and img["alt"].startswith("Trajectory.")
    assert page.evaluate("document.querySelectorAll('script').length") == 0

    shot = artifacts_dir / f"digest_{stem.strip('_')}_640.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    page.close()
