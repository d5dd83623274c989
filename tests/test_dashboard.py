"""The dashboard's pages, run by Streamlit's AppTest on a demo lake and on an empty one.

Every number a page shows must be the analytics package's: the tests compute the same
numbers through :mod:`analytics` and compare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_h
from streamlit.testing.v1 import AppTest

from analytics.lake import open_lake
from dashboards import data
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
    with open_lake(demo_dir / "data") as lake:
        last = lake.summary()["last"]
    until = last.date().toordinal() + 1
    from datetime import date

    return date.fromordinal(until - 7).isoformat(), date.fromordinal(until).isoformat()


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
    data.config()  # fill the cache from this configuration
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
