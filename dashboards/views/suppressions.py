"""Suppressions: who is suppressed and why, over time; and why one address is."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, data, layout

filters = layout.start("Suppressions")
if filters is not None:
    version = data.version()
    total = data.suppressed(version).height
    by_day = data.suppressions_per_day(filters, version)
    left, right = st.columns(2)
    left.metric("suppressed addresses", f"{total:,}")
    right.metric("added in the selected dates", f"{int(by_day['addresses'].sum()):,}")
    st.subheader("New suppressions per day, by rule")
    if by_day.is_empty():
        st.write("No address was suppressed in the selected dates.")
    else:
        st.altair_chart(
            charts.stacked_per_day(by_day, "day", "addresses", "rule", "addresses suppressed"),
            width="stretch",
        )
    st.subheader("Latest additions")
    layout.table(data.latest_suppressions(version), key="latest_suppressions")
    address = st.text_input(
        "Why is this address suppressed?", key="why_address", placeholder="name@example.com"
    )
    if address.strip():
        st.code("\n".join(data.why(address).lines()), language=None)

layout.finish()
