"""Suppressions: who is suppressed and why, over time; and why one address is."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import data, layout

filters = layout.start("Suppressions")
if filters is not None:
    version = data.version()
    table = data.suppressed(version)
    st.metric("suppressed addresses", f"{table.height:,}")
    if table.height:
        by_day = (
            table.with_columns(pl.col("suppressed_at").dt.date().alias("day"))
            .group_by("day", "rule")
            .len("addresses")
            .sort("day")
        )
        st.subheader("New suppressions per day, by rule")
        st.bar_chart(
            by_day, x="day", y="addresses", color="rule", x_label="day", y_label="addresses"
        )
        st.subheader("Latest additions")
        st.dataframe(
            table.sort("suppressed_at", descending=True)
            .head(20)
            .select("address", "rule", "reason", "suppressed_at"),
            hide_index=True,
            key="latest_suppressions",
        )
    address = st.text_input("Why is this address suppressed?", key="why_address")
    if address.strip():
        st.code("\n".join(data.why(address).lines()), language=None)

layout.finish()
