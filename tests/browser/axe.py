"""What every console page test does to a page it reaches: axe-core's check and a screenshot.

    from tests.browser.axe import check_page, shoot
    check_page(page, "teams")   # axe: no serious or critical violation; then shoot(page, "teams")

axe-core comes bundled with axe-playwright-python (nothing is downloaded); it is injected into
the page by Playwright, so it needs a context with JavaScript on (in one without, `evaluate` never
returns: shoot only). Screenshots go to var/screenshots/<name>.png (git-ignored; SCREENSHOTS
moves them), full page, so CI can keep the folder as an artifact and the README can show them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

SCREENSHOTS = Path(os.environ.get("SCREENSHOTS", Path(__file__).resolve().parents[2] / "var" / "screenshots"))
BLOCKING = frozenset({"serious", "critical"})
_AXE = Axe()


def shoot(page: Page, name: str) -> Path:
    """Save a full-page screenshot of `page` as SCREENSHOTS/<name>.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; return its serious and critical violations."""
    results = _AXE.run(page)
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
                     for v in violations)


def check_page(page: Page, name: str) -> None:
    """Assert that axe finds no serious or critical violation on the page, then screenshot it as `name`."""
    found = serious_violations(page)
    assert not found, describe(found)
    shoot(page, name)
