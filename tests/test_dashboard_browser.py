"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

It starts the real ``mailpulse dashboard`` on a demo lake, opens every page, checks the key
numbers against the analytics package, and saves a screenshot of each page into
``tests/artifacts/`` (kept by CI as the test's artifacts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, sync_playwright

from analytics.lake import open_lake
from bench.browser import CHROMIUM_ARGS, PAGES, chromium, wait_ready
from mailpulse.demo import free_port
from tests.helpers import mailpulse

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A demo lake and the real dashboard serving it; yields (base URL, working dir)."""
    workdir = tmp_path_factory.mktemp("browser-demo").resolve()
    made = mailpulse("demo", "--messages", "120", "--no-dashboard", cwd=workdir, timeout=300)
    assert made.returncode == 0, made.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPULSE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mailpulse", "dashboard", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/_stcore/health", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the dashboard did not start")
    yield base, workdir
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield tab
        browser.close()


def metric(page: Page, label: str) -> str:
    tile = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return tile.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_every_page_opens_and_the_numbers_are_the_analytics_numbers(
    dashboard: tuple[str, Path], page: Page
) -> None:
    base, workdir = dashboard
    with open_lake(workdir / "data") as lake:
        last = lake.summary()["last"].date()
        until = last + timedelta(days=1)
        since = until - timedelta(days=7)
        row = lake.metrics(None, since=since, until=until).row(0, named=True)
        campaigns = lake.metrics("campaign", since=since, until=until)
    query = f"?since={since}&until={until}"
    ARTIFACTS.mkdir(exist_ok=True)
    for path, title in PAGES.items():
        page.goto(f"{base}/{path}{query}")
        wait_ready(page, title)
        assert not page.locator('[data-testid="stException"]').count(), path
        assert not page.get_by_text("Page not found").count(), path
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{path or 'overview'}.png"))
        if path == "":
            assert metric(page, "sent") == f"{row['sent']:,}"
            assert metric(page, "delivery rate") == f"{row['delivery_rate']:.1%}"
            assert metric(page, "bounce rate") == f"{row['bounce_rate']:.1%}"
            assert metric(page, "unique open rate") == f"{row['unique_open_rate']:.1%}"
        if path == "campaigns":
            # The table is drawn on a canvas; the details below it name the first campaign.
            first = campaigns["campaign"][0]
            page.get_by_text(f"{first}: funnel").wait_for(timeout=10_000)
