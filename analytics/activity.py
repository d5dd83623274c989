"""Event-level views beside the metric registry: what arrived when, which links, which bounces.

The registry answers "how did the messages do"; these answer "what is happening": arrivals per
minute by source, the last event of each source, activity over the hours after sending, the
links people click, the reasons messages bounce. Each query lives here, once, and returns a
polars frame; the dashboard and notebooks call these functions and never write SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from analytics.lake import Lake, When, _instant

# Filters shared by the event queries: by the event's own date (not the message's), campaign
# and source; any may be NULL.
_WHERE = """
    ($since IS NULL OR occurred_at >= $since)
    AND ($until IS NULL OR occurred_at < $until)
    AND ($campaign IS NULL OR campaign = $campaign)
    AND ($source IS NULL OR source = $source)
"""

_PER_MINUTE = """
SELECT source, date_trunc('minute', received_at) AS minute, count(*) AS events
FROM events
WHERE received_at >= $start
GROUP BY ALL
ORDER BY minute, source
"""

_LAST_EVENT = """
SELECT source, provider, max(received_at) AS last_received_at, count(*) AS events
FROM events
GROUP BY ALL
ORDER BY source
"""

_AFTER_SEND = f"""
WITH timed AS (
    SELECT
        event_type,
        agent,
        occurred_at,
        min(occurred_at) OVER (PARTITION BY message_id, recipient) AS first_at
    FROM events
    WHERE {_WHERE}
)
SELECT
    CAST(floor(epoch(occurred_at - first_at) / 3600) AS INTEGER) AS hours_after_send,
    event_type,
    CASE WHEN agent = 'human' THEN 'human' ELSE 'machine' END AS who,
    count(*) AS events
FROM timed
WHERE event_type IN ('opened', 'clicked')
GROUP BY ALL
ORDER BY hours_after_send, event_type, who
"""

_TOP_LINKS = f"""
SELECT url, count(*) FILTER (WHERE agent = 'human') AS human_clicks, count(*) AS all_clicks
FROM events
WHERE event_type = 'clicked' AND url IS NOT NULL AND {_WHERE}
GROUP BY url
ORDER BY human_clicks DESC, all_clicks DESC, url
LIMIT $limit
"""

_BOUNCE_REASONS = f"""
SELECT
    coalesce(bounce_class, 'undetermined') AS bounce_class,
    coalesce(smtp_status, '') AS smtp_status,
    coalesce(reason, '(no reason given)') AS reason,
    count(*) AS bounces
FROM events
WHERE event_type = 'bounced' AND {_WHERE}
GROUP BY ALL
ORDER BY bounces DESC, reason
LIMIT $limit
"""


def events_per_minute(lake: Lake, start: datetime) -> pl.DataFrame:
    """Events received per minute and source since ``start`` (by when the receiver took them)."""
    return lake.sql(_PER_MINUTE, {"start": start})


def last_event_per_source(lake: Lake) -> pl.DataFrame:
    """Each source's provider, latest receive time and event count."""
    return lake.sql(_LAST_EVENT)


def activity_after_send(
    lake: Lake,
    *,
    since: When = None,
    until: When = None,
    campaign: str | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """Opens and clicks (human or machine) per whole hour after each message's first event."""
    return lake.sql(_AFTER_SEND, _params(since, until, campaign, source))


def top_links(
    lake: Lake,
    *,
    since: When = None,
    until: When = None,
    campaign: str | None = None,
    source: str | None = None,
    limit: int = 10,
) -> pl.DataFrame:
    """The most clicked URLs, by human clicks (scanner and bot clicks beside them)."""
    return lake.sql(_TOP_LINKS, {**_params(since, until, campaign, source), "limit": limit})


def bounce_reasons(
    lake: Lake,
    *,
    since: When = None,
    until: When = None,
    campaign: str | None = None,
    source: str | None = None,
    limit: int = 10,
) -> pl.DataFrame:
    """The commonest bounce class, status and reason combinations."""
    return lake.sql(_BOUNCE_REASONS, {**_params(since, until, campaign, source), "limit": limit})


def _params(since: When, until: When, campaign: str | None, source: str | None) -> dict[str, Any]:
    return {
        "since": _instant(since),
        "until": _instant(until),
        "campaign": campaign,
        "source": source,
    }
