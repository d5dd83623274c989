"""The sidebar filters, kept in the URL's query parameters so a view survives a reload and
can be shared as a link: ``?since=2026-11-01&until=2026-11-08&campaign=x&source=y``."""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from dashboards import data

DEFAULT_DAYS = 7
KEYS = ("since", "until", "campaign", "source")
# The last filters of this browser session: switching pages drops the query string, and the
# filters should follow the reader from page to page.
_SAVED = "mailpulse_filters"


def _params() -> dict[str, str]:
    """The filter parameters of the URL; the session's last ones when the URL has none."""
    params = {key: st.query_params[key] for key in KEYS if key in st.query_params}
    saved = st.session_state.get(_SAVED)
    if not params and isinstance(saved, dict):
        return dict(saved)
    return params


def _date(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:  # a hand-edited link: fall back rather than fail
        return default


def read(campaigns: list[str], sources: list[str], today: date) -> data.Filters:
    """Filters from the query parameters; unknown or malformed values fall back to defaults."""
    params = _params()
    until = _date(params.get("until"), today + timedelta(days=1))
    since = _date(params.get("since"), until - timedelta(days=DEFAULT_DAYS))
    if since >= until:
        since = until - timedelta(days=DEFAULT_DAYS)
    campaign = params.get("campaign")
    source = params.get("source")
    return data.Filters(
        since=since,
        until=until,
        campaign=campaign if campaign in campaigns else None,
        source=source if source in sources else None,
    )


def sidebar(campaigns: list[str], sources: list[str], today: date) -> data.Filters:
    """Draw the filters and write the choice back into the URL."""
    current = read(campaigns, sources, today)
    with st.sidebar:
        st.header("Filters")
        picked = st.date_input(
            "Messages sent between",
            value=(current.since, current.until - timedelta(days=1)),
            key="filter_dates",
        )
        campaign = st.selectbox(
            "Campaign",
            ["All campaigns", *campaigns],
            index=campaigns.index(current.campaign) + 1 if current.campaign else 0,
            key="filter_campaign",
        )
        source = st.selectbox(
            "Source",
            ["All sources", *sources],
            index=sources.index(current.source) + 1 if current.source else 0,
            key="filter_source",
        )
    since, until = current.since, current.until
    if isinstance(picked, tuple) and len(picked) == 2:
        since, until = picked[0], picked[1] + timedelta(days=1)
    chosen = data.Filters(
        since=since,
        until=until,
        campaign=None if campaign == "All campaigns" else campaign,
        source=None if source == "All sources" else source,
    )
    params = {"since": chosen.since.isoformat(), "until": chosen.until.isoformat()}
    if chosen.campaign:
        params["campaign"] = chosen.campaign
    if chosen.source:
        params["source"] = chosen.source
    st.session_state[_SAVED] = params
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
    return chosen
