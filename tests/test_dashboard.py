"""The dashboard's pages, run by Streamlit's AppTest on a demo lake and on an empty one.

Every number a page shows must be the analytics package's: the tests compute the same
numbers through :mod:`analytics` and compare.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import make_server

import pytest
import streamlit as st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_h
from prometheus_client import CollectorRegistry, Counter, make_wsgi_app
from streamlit.testing.v1 import AppTest

from analytics import activity
from analytics.lake import open_lake
from analytics.suppression import suppressions
from dashboards import data
from dashboards.thresholds import offenders
from mailpulse.config import SuppressionConfig
from mailpulse.demo import free_port
from tests.helpers import mailpulse

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["overview", "campaigns", "deliverability", "suppressions", "health"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo lake made by the real command, in a directory without a mailpulse.toml."""
    workdir = tmp_path_factory.mktemp("dashboard-demo").resolve()
    result = mailpulse("demo", "--messages", "120", "--no-dashboard", cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stderr
    return workdir


def _config(directory: Path) -> Path:
    path = directory / "dashboard.toml"
    if not path.exists():
        path.write_text(f'data_dir = "{directory / "data"}"\n')
    return path


@pytest.fixture
def use_lake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the dashboard at a directory's lake, with fresh caches."""

    def point(directory: Path) -> None:
        monkeypatch.setenv("MAILPULSE_CONFIG", str(_config(directory)))
        monkeypatch.delenv("MAILPULSE_DATA_DIR", raising=False)
        st.cache_data.clear()
        st.cache_resource.clear()

    yield point
    st.cache_data.clear()
    st.cache_resource.clear()


def run(page: str, **params: str) -> AppTest:
    app = AppTest.from_file(str(ROOT / "dashboards" / "views" / f"{page}.py"), default_timeout=60)
    for key, value in params.items():
        app.query_params[key] = value
    return app.run()


def tiles(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo_lake(demo_dir: Path, use_lake: Any, page: str) -> None:
    use_lake(demo_dir)
    app = run(page)
    assert not app.exception, app.exception
    assert app.title[0].value


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_what_to_do_on_an_empty_lake(
    tmp_path: Path, use_lake: Any, page: str
) -> None:
    (tmp_path / "data").mkdir()
    use_lake(tmp_path)
    app = run(page)
    assert not app.exception, app.exception
    assert any("No events yet" in info.value for info in app.info)


def _since_until(demo_dir: Path) -> tuple[str, str]:
    """The dashboard's default range: the 7 days up to the lake's last event."""
    with open_lake(demo_dir / "data") as lake:
        last = lake.summary()["last"].date()
    return (last - timedelta(days=6)).isoformat(), (last + timedelta(days=1)).isoformat()


def test_overview_tiles_are_the_registry_numbers(demo_dir: Path, use_lake: Any) -> None:
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    app = run("overview", since=since, until=until)
    with open_lake(demo_dir / "data") as lake:
        row = lake.metrics(None, since=since, until=until).row(0, named=True)
    shown = tiles(app)
    assert shown["sent"] == f"{row['sent']:,}"
    for name in ("delivery_rate", "unique_open_rate", "unique_click_rate", "bounce_rate"):
        assert shown[name.replace("_", " ")] == f"{row[name]:.1%}", name


def test_a_campaign_filter_changes_the_numbers_as_analytics_says(
    demo_dir: Path, use_lake: Any
) -> None:
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    with open_lake(demo_dir / "data") as lake:
        campaign = lake.metrics("campaign", since=since, until=until)["campaign"][0]
        row = lake.metrics(None, since=since, until=until, campaign=campaign).row(0, named=True)
        overall = lake.metrics(None, since=since, until=until).row(0, named=True)
    app = run("overview", since=since, until=until)
    assert tiles(app)["sent"] == f"{overall['sent']:,}"
    app.selectbox(key="filter_campaign").select(campaign).run()
    assert not app.exception
    assert tiles(app)["sent"] == f"{row['sent']:,}" != f"{overall['sent']:,}"
    assert app.query_params["campaign"] in (campaign, [campaign])  # the choice is in the link


def test_a_source_in_the_link_selects_it(demo_dir: Path, use_lake: Any) -> None:
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    with open_lake(demo_dir / "data") as lake:
        row = lake.metrics(None, since=since, until=until, source="sendgrid").row(0, named=True)
    app = run("overview", since=since, until=until, source="sendgrid")
    assert app.selectbox(key="filter_source").value == "sendgrid"
    assert tiles(app)["sent"] == f"{row['sent']:,}"


def test_the_campaigns_table_is_the_registry_table(demo_dir: Path, use_lake: Any) -> None:
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    app = run("campaigns", since=since, until=until)
    table = app.dataframe[0].value
    with open_lake(demo_dir / "data") as lake:
        expected = lake.metrics("campaign", since=since, until=until)
    assert list(table["campaign"]) == expected["campaign"].to_list()
    assert list(table["sent"]) == expected["sent"].to_list()


def test_the_search_box_explains_a_suppression(demo_dir: Path, use_lake: Any) -> None:
    use_lake(demo_dir)
    data.lake()  # fill the cache from this configuration
    suppressed = data.suppressed(data.version())
    address = suppressed["address"][0]
    app = run("suppressions")
    app.text_input(key="why_address").input(address).run()
    assert not app.exception
    assert f"{address} is suppressed" in app.code[0].value


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st_h.dictionaries(
        st_h.sampled_from(["since", "until", "campaign", "source", "other"]),
        st_h.text(max_size=30),
        max_size=4,
    )
)
def test_junk_in_the_link_never_breaks_a_page(
    demo_dir: Path, use_lake: Any, params: dict[str, str]
) -> None:
    use_lake(demo_dir)
    app = run("overview", **params)
    assert not app.exception, (params, app.exception)


def test_a_date_range_change_changes_the_numbers_as_analytics_says(
    demo_dir: Path, use_lake: Any
) -> None:
    """Picking one day in the date box shows that day's registry numbers, in the link too."""
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    day = date.fromisoformat(until) - timedelta(days=2)
    with open_lake(demo_dir / "data") as lake:
        whole = lake.metrics(None, since=since, until=until).row(0, named=True)
        one = lake.metrics(None, since=day, until=day + timedelta(days=1)).row(0, named=True)
    app = run("overview", since=since, until=until)
    assert tiles(app)["sent"] == f"{whole['sent']:,}"
    app.date_input(key="filter_dates").set_value((day, day)).run()
    assert not app.exception
    assert tiles(app)["sent"] == f"{one['sent']:,}" != f"{whole['sent']:,}"
    assert tiles(app)["delivery rate"] == f"{one['delivery_rate']:.1%}"
    assert app.query_params["since"] in (day.isoformat(), [day.isoformat()])


def test_filters_follow_the_reader_to_another_page(demo_dir: Path, use_lake: Any) -> None:
    """Switching pages drops the query string; the session's filters fill it in again."""
    use_lake(demo_dir)
    app = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=60)
    app.query_params["source"] = "sendgrid"
    app.run()
    assert app.selectbox(key="filter_source").value == "sendgrid"
    app.switch_page("views/campaigns.py")
    for key in list(app.query_params):
        del app.query_params[key]
    app.run()
    assert not app.exception
    assert app.title[0].value == "Campaigns"
    assert app.selectbox(key="filter_source").value == "sendgrid"
    assert app.query_params["source"] in ("sendgrid", ["sendgrid"])


def test_choosing_a_campaign_shows_its_funnel(demo_dir: Path, use_lake: Any) -> None:
    """The funnel tiles of the chosen campaign are the registry's counts."""
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    with open_lake(demo_dir / "data") as lake:
        names = lake.metrics("campaign", since=since, until=until)["campaign"].to_list()
        last = names[-1]
        row = lake.metrics(None, since=since, until=until, campaign=last).row(0, named=True)
    app = run("campaigns", since=since, until=until)
    app.selectbox(key="campaign_pick").select(last).run()
    assert not app.exception
    assert app.subheader[0].value == f"{last}: funnel"
    shown = tiles(app)
    assert shown["sent"] == f"{row['sent']:,}"
    assert shown["delivered"] == f"{row['delivered']:,}"
    assert shown["opened (people)"] == f"{row['unique_opens']:,}"
    assert shown["clicked (people)"] == f"{row['unique_clicks']:,}"


def test_the_worst_offenders_are_the_registry_rows(demo_dir: Path, use_lake: Any) -> None:
    """The offenders table ranks the registry's campaign, ESP, source and mailbox rows."""
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    with open_lake(demo_dir / "data") as lake:
        frames = {
            by: lake.metrics(by, since=since, until=until)
            for by in ("campaign", "provider", "source", "mailbox_provider")
        }
    expected = offenders(frames)
    app = run("deliverability", since=since, until=until)
    shown = next(frame.value for frame in app.dataframe if "over" in frame.value.columns)
    assert list(shown["name"]) == expected["name"].to_list()
    assert list(shown["bounce_rate"]) == pytest.approx(expected["bounce_rate"].to_list())


def test_suppression_counts_are_the_engines(demo_dir: Path, use_lake: Any) -> None:
    """The total is the suppression engine's own (walked) table; the day counts add up."""
    use_lake(demo_dir)
    since, until = _since_until(demo_dir)
    with open_lake(demo_dir / "data") as lake:
        table = suppressions(lake, SuppressionConfig())
    day = table["suppressed_at"].dt.date()
    chosen = table.filter((day >= date.fromisoformat(since)) & (day < date.fromisoformat(until)))
    app = run("suppressions", since=since, until=until)
    shown = tiles(app)
    assert shown["suppressed addresses"] == f"{table.height:,}"
    assert shown["added in the selected dates"] == f"{chosen.height:,}"
    latest = app.dataframe[0].value
    assert "-" in list(latest["reason"]) and None not in list(latest["reason"])  # as the CLI
    assert list(latest["address"]) == (
        table.sort(["suppressed_at", "address"], descending=[True, False])["address"]
        .head(20)
        .to_list()
    )


def test_health_shows_every_source_and_the_quarantine(
    demo_dir: Path, use_lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every source's last event is listed; an unreachable receiver is said, not raised."""
    use_lake(demo_dir)
    monkeypatch.setenv("MAILPULSE_RECEIVER_URL", f"http://127.0.0.1:{free_port()}")
    with open_lake(demo_dir / "data") as lake:
        expected = activity.last_event_per_source(lake)
    app = run("health")
    table = app.dataframe[0].value
    assert list(table["source"]) == expected["source"].to_list()
    assert list(table["events"]) == expected["events"].to_list()
    assert tiles(app)["quarantined requests"] == "0"
    (notice,) = [box.value for box in app.info]
    assert "No receiver is running" in notice and "make demo" in notice  # what it means, and
    assert "mailpulse serve" in notice and "--receiver-url" in notice  # what to do about it


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(address=st_h.text(max_size=60))
def test_any_text_in_the_search_box_gets_an_answer(
    demo_dir: Path, use_lake: Any, address: str
) -> None:
    """Whatever is typed, the page answers in words, never with a traceback."""
    use_lake(demo_dir)
    app = run("suppressions")
    app.text_input(key="why_address").input(address).run()
    assert not app.exception, (address, app.exception)
    if address.strip():
        assert "suppressed" in app.code[0].value


def test_signature_failures_are_read_from_the_receivers_metrics(
    tmp_path: Path, use_lake: Any
) -> None:
    """The receiver's counters, parsed by source and reason, as the health page lists them."""
    (tmp_path / "data").mkdir()
    use_lake(tmp_path)
    counter = Counter(
        "mailpulse_signature_failures",
        "failures",
        ["source", "reason"],
        registry=(r := CollectorRegistry()),
    )
    counter.labels("sendgrid", "bad_signature").inc(3)
    counter.labels("ses", "unknown_topic").inc()
    server = make_server("127.0.0.1", 0, make_wsgi_app(r))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        failures = data.signature_failures(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert failures is not None
    assert sorted(failures.rows()) == [
        ("sendgrid", "bad_signature", 3),
        ("ses", "unknown_topic", 1),
    ]
