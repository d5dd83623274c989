"""Everything the pages show, read through the analytics package and cached.

Pages call these functions only: the numbers come from the metric registry
(:meth:`analytics.lake.Lake.metrics`), the suppression engine and :mod:`analytics.activity`,
never from SQL written here. Results are cached per lake *version* (how many Parquet files,
and the newest one's modification time: an argument of every cached function, so part of the
cache key), so new data shows on the next rerun and nothing is computed twice for the same
files; the TTL bounds what a cache holds for versions no longer asked for.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import requests
import streamlit as st
from prometheus_client.parser import text_string_to_metric_families

from analytics import activity
from analytics.actions import actions_status as read_actions_status
from analytics.lake import Lake, open_lake
from analytics.suppression import Explanation, explain
from analytics.suppression_table import latest, per_day, suppression_table

HEADLINE_TILES = (
    "sent",
    "delivery_rate",
    "unique_open_rate",
    "unique_click_rate",
    "bounce_rate",
    "complaint_rate",
)
SILENT_AFTER = timedelta(hours=1)  # a source with no event for this long is flagged
_LOCK = threading.Lock()  # one DuckDB connection serves every session: one query at a time


@dataclass(frozen=True)
class Filters:
    """What the sidebar selects: a date range of message send dates, campaign, source."""

    since: date
    until: date  # exclusive
    campaign: str | None = None
    source: str | None = None

    def previous(self) -> Filters:
        """The period of the same length just before this one."""
        length = self.until - self.since
        return Filters(self.since - length, self.since, self.campaign, self.source)

    def query(self) -> dict[str, Any]:
        """Keyword arguments for the analytics functions."""
        return {
            "since": self.since,
            "until": self.until,
            "campaign": self.campaign,
            "source": self.source,
        }


@st.cache_resource
def lake() -> Lake:
    """The lake of the configuration the dashboard was started with (``MAILPULSE_CONFIG``),
    opened once per process; its settings are ``lake().config``."""
    return open_lake(create=True)


def version() -> tuple[int, float]:
    """How many event files the lake holds and the newest one's time: the cache key."""
    return lake().version()


def _query(function: Any, *args: Any, **kwargs: Any) -> pl.DataFrame:
    with _LOCK:
        frame: pl.DataFrame = function(lake(), *args, **kwargs)
        return frame


@st.cache_data(ttl=60, show_spinner=False)
def metrics(
    by: str | tuple[str, ...] | None,
    filters: Filters,
    version: tuple[int, float],
    period: str = "day",
) -> pl.DataFrame:
    """Registry metrics per ``by`` value (overall when None; per combination when several)
    for the filters."""
    return _query(Lake.metrics, by, period=period, **filters.query())


@st.cache_data(ttl=60, show_spinner=False)
def summary(version: tuple[int, float]) -> dict[str, Any]:
    """Events, campaigns and the span the lake covers."""
    with _LOCK:
        return lake().summary()


@st.cache_data(ttl=60, show_spinner=False)
def choices(version: tuple[int, float]) -> tuple[list[str], list[str]]:
    """Campaigns and sources present in the lake, for the filter boxes."""
    campaigns = _query(Lake.metrics, "campaign", metrics=["sent"])["campaign"]
    sources = _query(Lake.metrics, "source", metrics=["sent"])["source"]
    return (
        sorted(value for value in campaigns.to_list() if value),
        sorted(value for value in sources.to_list() if value),
    )


@st.cache_data(ttl=60, show_spinner=False)
def after_send(filters: Filters, version: tuple[int, float]) -> pl.DataFrame:
    """Opens and clicks by hour after sending."""
    return _query(activity.activity_after_send, **filters.query())


@st.cache_data(ttl=60, show_spinner=False)
def links(filters: Filters, version: tuple[int, float]) -> pl.DataFrame:
    """The most clicked links."""
    return _query(activity.top_links, **filters.query())


@st.cache_data(ttl=60, show_spinner=False)
def bounces(filters: Filters, version: tuple[int, float]) -> pl.DataFrame:
    """The commonest bounce reasons."""
    return _query(activity.bounce_reasons, **filters.query())


@st.cache_data(ttl=60, show_spinner=False)
def suppressed(version: tuple[int, float]) -> pl.DataFrame:
    """Every suppressed address with its rule, reason and time (the set-based query: the
    same table as the suppression engine's walk, in a fraction of the time)."""
    with _LOCK:
        the_lake = lake()
        return suppression_table(the_lake, the_lake.config.suppression)


@st.cache_data(ttl=60, show_spinner=False)
def suppressions_per_day(filters: Filters, version: tuple[int, float]) -> pl.DataFrame:
    """New suppressions per day and rule, for the days the filters select."""
    table = suppressed(version)
    day = pl.col("suppressed_at").dt.date()
    return per_day(table.filter((day >= filters.since) & (day < filters.until)))


@st.cache_data(ttl=60, show_spinner=False)
def latest_suppressions(version: tuple[int, float], limit: int = 20) -> pl.DataFrame:
    """The newest additions to the suppression list."""
    return latest(suppressed(version), limit)


def why(address: str) -> Explanation:
    """Why one address is (or is not) suppressed."""
    with _LOCK:
        return explain(lake(), lake().config.suppression, address)


@st.cache_data(ttl=15, show_spinner=False)
def arrivals(version: tuple[int, float], hours: int = 6) -> pl.DataFrame:
    """Events per minute by source over the last ``hours``."""
    start = datetime.now(UTC) - timedelta(hours=hours)
    return _query(activity.events_per_minute, start)


@st.cache_data(ttl=15, show_spinner=False)
def sources_health(version: tuple[int, float]) -> pl.DataFrame:
    """Each source's last event and how long ago it was, with ``silent`` set when that is
    longer than ``SILENT_AFTER``."""
    frame = _query(activity.last_event_per_source)
    age = pl.lit(datetime.now(UTC)) - pl.col("last_received_at")
    return frame.with_columns(
        age.dt.total_minutes().alias("minutes_since_last"),
        (age > SILENT_AFTER).alias("silent"),
    )


def flusher_status() -> dict[str, Any]:
    """The flusher's last status (pending spool bytes, last flush time), with the quarantine's
    size counted from the lake now (Parquet footers only), so it shows without a flusher."""
    return lake().ingestion_status()


def actions_status() -> pl.DataFrame:
    """One row per action from the dispatcher's last snapshot (empty when no action ran);
    not cached: the snapshot is a small file that changes every second while actions run."""
    return read_actions_status(lake().config.state_dir)


def signature_failures(url: str | None = None) -> pl.DataFrame | None:
    """Signature failures by source and reason from the receiver's ``/metrics``.

    None when the receiver cannot be reached (it may run elsewhere, or not at all).
    The URL is ``url``, else ``$MAILPULSE_RECEIVER_URL``, else ``[dashboard] receiver_url``.
    """
    # --receiver-url (via the environment) wins over the config's [dashboard] receiver_url.
    target = url or os.environ.get("MAILPULSE_RECEIVER_URL") or lake().config.dashboard.receiver_url
    try:
        text = requests.get(f"{target.rstrip('/')}/metrics", timeout=1).text
    except requests.RequestException:
        return None
    rows = [
        {
            "source": sample.labels.get("source", ""),
            "reason": sample.labels.get("reason", ""),
            "failures": int(sample.value),
        }
        for family in text_string_to_metric_families(text)
        if family.name == "mailpulse_signature_failures"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    return pl.DataFrame(
        rows, schema={"source": pl.String, "reason": pl.String, "failures": pl.Int64}
    )
