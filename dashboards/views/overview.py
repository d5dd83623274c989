"""Overview: the headline tiles against the previous period, and the trends."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, data, layout

filters = layout.start("Campaign performance")
if filters is not None:
    version = data.version()
    now = data.metrics(None, filters, version).row(0, named=True)
    before = data.metrics(None, filters.previous(), version).row(0, named=True)
    st.caption(
        f"Messages sent {filters.since} to {filters.until} (exclusive), against the "
        f"{(filters.until - filters.since).days} days before."
    )
    columns = st.columns(len(data.HEADLINE_TILES))
    for column, name in zip(columns, data.HEADLINE_TILES, strict=True):
        value, previous = now[name], before[name]
        label = name.replace("_", " ")
        if name == "sent":
            delta = None if previous is None else f"{value - previous:+,}"
            column.metric(label, f"{value:,}", delta)
        else:
            delta = (
                None
                if value is None or previous is None
                else f"{(value - previous) * 100:+.1f} pts"
            )
            # Fewer bounces and complaints are better: their arrows read the other way.
            inverse = name in ("bounce_rate", "complaint_rate")
            column.metric(
                label, layout.percent(value), delta, delta_color="inverse" if inverse else "normal"
            )
    trend = data.metrics("date", filters, version)
    left, right = st.columns(2)
    left.altair_chart(
        charts.rate_over_time(trend, "date", "unique_open_rate", "unique open rate"),
        width="stretch",
    )
    right.altair_chart(
        charts.rate_over_time(trend, "date", "bounce_rate", "bounce rate"),
        width="stretch",
    )
    st.subheader("Per day")
    st.dataframe(trend, hide_index=True, key="overview_trend")

layout.finish()
