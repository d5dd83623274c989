"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

It starts the real ``mailpulse dashboard`` on a demo lake, opens every page, checks the key
numbers against the analytics package, and saves a screenshot of each page into
``tests/artifacts/`` (kept by CI as the test's artifacts).
"""

from __future__ import annotations

import contextlib
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

from analytics import activity
from analytics.lake import open_lake
from analytics.suppression import suppressions
from bench.browser import CHROMIUM_ARGS, PAGES, chromium, wait_ready
from dashboards.thresholds import offenders
from mailpulse.config import SuppressionConfig
from mailpulse.demo import free_port
from tests.helpers import mailpulse

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
HEADLINE_RATES = (
    "delivery_rate",
    "unique_open_rate",
    "unique_click_rate",
    "bounce_rate",
    "complaint_rate",
)


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
    # SIGTERM to the command alone, as a service manager sends it: Streamlit must stop too.
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group
    assert returncode == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/_stcore/health", timeout=1)


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


def whole_page(page: Page, title: str, path: Path) -> None:
    """Screenshot all of a page: Streamlit scrolls inside its main block, not the document,
    so the window is made as tall as that block for the picture."""
    size = page.viewport_size or {"width": 1400, "height": 1000}
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(int(height), size["height"])})
    wait_ready(page, title)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def test_every_page_opens_and_the_numbers_are_the_analytics_numbers(
    dashboard: tuple[str, Path], page: Page
) -> None:
    """Each page renders without an exception and shows the analytics package's numbers."""
    base, workdir = dashboard
    with open_lake(workdir / "data") as lake:
        last = lake.summary()["last"].date()
        until = last + timedelta(days=1)
        since = until - timedelta(days=7)
        row = lake.metrics(None, since=since, until=until).row(0, named=True)
        by = {
            name: lake.metrics(name, since=since, until=until)
            for name in ("campaign", "provider", "source", "mailbox_provider")
        }
        first = by["campaign"]["campaign"][0]
        funnel = lake.metrics(None, since=since, until=until, campaign=first).row(0, named=True)
        suppressed = suppressions(lake, SuppressionConfig())
        sources = activity.last_event_per_source(lake)["source"].to_list()
    worst = offenders(by)
    over = worst.filter(worst["over"] != "").height
    query = f"?since={since}&until={until}"
    ARTIFACTS.mkdir(exist_ok=True)
    for path, title in PAGES.items():
        page.goto(f"{base}/{path}{query}")
        wait_ready(page, title)
        assert not page.locator('[data-testid="stException"]').count(), path
        assert not page.get_by_text("Page not found").count(), path
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{path}.png"))
        whole_page(page, title, ARTIFACTS / f"dashboard-{path}-full.png")
        if path == "overview":
            assert metric(page, "sent") == f"{row['sent']:,}"
            for rate in HEADLINE_RATES:
                assert metric(page, rate.replace("_", " ")) == f"{row[rate]:.1%}", rate
        if path == "campaigns":
            # The table is drawn on a canvas; the details below it show the first campaign.
            page.get_by_text(f"{first}: funnel").wait_for(timeout=10_000)
            assert metric(page, "delivered") == f"{funnel['delivered']:,}"
            assert metric(page, "opened (people)") == f"{funnel['unique_opens']:,}"
        if path == "deliverability":
            expected = (
                f"{over} of the worst {worst.height} are over a limit"
                if over
                else ("Nothing is over a provider's limit.")
            )
            assert page.get_by_text(expected).count(), expected
        if path == "suppressions":
            assert metric(page, "suppressed addresses") == f"{suppressed.height:,}"
            address = suppressed["address"][0]
            page.get_by_label("Why is this address suppressed?").fill(address)
            page.keyboard.press("Enter")
            page.get_by_text(f"{address} is suppressed").first.wait_for(timeout=15_000)
            wait_ready(page, title)
            page.screenshot(path=str(ARTIFACTS / "dashboard-suppressions-search.png"))
        if path == "health":
            assert metric(page, "quarantined requests") == "0"
            for source in sources:
                assert page.get_by_text(source, exact=True).count(), source


def test_filters_follow_the_reader_to_another_page(dashboard: tuple[str, Path], page: Page) -> None:
    """A source chosen on one page is still chosen after the sidebar link to another."""
    base, _ = dashboard
    page.goto(f"{base}/overview?source=sendgrid")
    wait_ready(page, PAGES["overview"])
    page.get_by_role("link", name="Campaigns").first.click()
    page.wait_for_url("**/campaigns?**")
    wait_ready(page, PAGES["campaigns"])
    assert "source=sendgrid" in page.url
    assert page.get_by_role("combobox", name="Source").input_value() == "sendgrid"


def test_every_page_has_a_url_that_works_typed_or_shared(
    dashboard: tuple[str, Path], page: Page
) -> None:
    """Each page opens from its own address, and the root address leads to the Overview with
    the link's filters kept."""
    base, _ = dashboard
    for path, title in PAGES.items():
        page.goto(f"{base}/{path}?source=sendgrid")
        wait_ready(page, title)
        assert not page.get_by_text("Page not found").count(), path
        assert page.url.startswith(f"{base}/{path}?"), page.url
        assert "source=sendgrid" in page.url
    page.goto(f"{base}/?source=sendgrid")
    page.wait_for_url("**/overview?**")
    wait_ready(page, PAGES["overview"])
    assert "source=sendgrid" in page.url
    assert page.get_by_role("combobox", name="Source").input_value() == "sendgrid"
