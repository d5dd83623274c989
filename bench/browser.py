"""Driving the dashboard in Debian's Chromium with Playwright: shared by its browser test and
its benchmark, so both call a page "ready" at the same moment."""

from __future__ import annotations

import shutil

from playwright.sync_api import Page

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# The pages' titles, by URL path ("" is the default page, Overview).
PAGES = {
    "overview": "Campaign performance",
    "campaigns": "Campaigns",
    "deliverability": "Deliverability",
    "suppressions": "Suppressions",
    "health": "Ingestion health",
}


# True once the script has finished and everything it drew is in place.
_READY = """() =>
    document.querySelector('#mailpulse-ready')
    && !document.querySelector('[data-testid="stStatusWidget"] button')
    && !document.querySelector('[data-stale="true"]')
    && !document.querySelector('[data-testid="stSkeleton"]')
    && [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
        .every(chart => chart.querySelector('canvas, svg'))"""


def chromium() -> str:
    """Debian's Chromium (installed by ``make test``), never a downloaded browser."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Chromium is missing: `make test` installs Debian's package")
    return path


def wait_ready(page: Page, title: str, timeout_ms: int = 60_000) -> None:
    """Until the page's title shows, the script has finished and every chart is drawn.

    Every page writes ``#mailpulse-ready`` last (``dashboards.layout.finish``); while the
    script runs Streamlit shows a Stop button, marks old elements stale and shows skeletons
    where new ones will go; charts draw their canvas or svg after that.
    """
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(_READY, timeout=timeout_ms)
