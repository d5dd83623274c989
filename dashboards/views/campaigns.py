"""Campaigns: every campaign's rates; one campaign's funnel, timing, links, bounces, audience."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import charts, data, layout

COLUMNS = [
    "campaign",
    "sent",
    "delivered",
    "delivery_rate",
    "unique_open_rate",
    "unique_click_rate",
    "click_to_open_rate",
    "bounce_rate",
    "complaint_rate",
    "unsubscribe_rate",
]
RATE = st.column_config.NumberColumn(format="percent")

filters = layout.start("Campaigns")
if filters is not None:
    version = data.version()
    table = data.metrics("campaign", filters, version).select(COLUMNS)
    st.dataframe(
        table,
        hide_index=True,
        key="campaign_table",
        column_config={name: RATE for name in COLUMNS if name.endswith("_rate")},
    )
    names = [name for name in table["campaign"].to_list() if name]
    if names:
        default = names.index(filters.campaign) if filters.campaign in names else 0
        chosen = st.selectbox("Campaign details", names, index=default, key="campaign_pick")
        one = data.Filters(filters.since, filters.until, chosen, filters.source)
        row = data.metrics(None, one, version).row(0, named=True)
        st.subheader(f"{chosen}: funnel")
        funnel = pl.DataFrame(
            {
                "stage": ["sent", "delivered", "opened (people)", "clicked (people)"],
                "messages": [
                    row["sent"],
                    row["delivered"],
                    row["unique_opens"],
                    row["unique_clicks"],
                ],
            }
        )
        left, right = st.columns(2)
        left.altair_chart(charts.bars(funnel, "stage", "messages", "messages"), width="stretch")
        opens = pl.DataFrame(
            {
                "opened by": ["people", "machines (Apple MPP, proxies, scanners)"],
                "messages": [row["unique_opens"], row["machine_opens"]],
            }
        )
        right.altair_chart(charts.bars(opens, "opened by", "messages", "messages"), width="stretch")
        st.subheader("Opens and clicks over the hours after sending")
        hours = data.after_send(one, version)
        if hours.is_empty():
            st.write("No opens or clicks yet.")
        else:
            st.altair_chart(charts.stacked_hours(hours))
        left, right = st.columns(2)
        left.subheader("Top links")
        left.dataframe(data.links(one, version), hide_index=True, key="top_links")
        right.subheader("Bounce reasons")
        right.dataframe(data.bounces(one, version), hide_index=True, key="bounce_reasons")
        left, right = st.columns(2)
        left.subheader("Recipient domains")
        left.dataframe(
            data.metrics("domain", one, version).select(
                "domain", "sent", "delivery_rate", "unique_open_rate", "bounce_rate"
            ),
            hide_index=True,
            column_config={"delivery_rate": RATE, "unique_open_rate": RATE, "bounce_rate": RATE},
        )
        right.subheader("Mailbox providers")
        right.dataframe(
            data.metrics("mailbox_provider", one, version).select(
                "mailbox_provider", "sent", "delivery_rate", "unique_open_rate", "machine_opens"
            ),
            hide_index=True,
            column_config={"delivery_rate": RATE, "unique_open_rate": RATE},
        )

layout.finish()
