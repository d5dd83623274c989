"""Campaigns: every campaign's rates; one campaign's funnel, timing, links, bounces, audience."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import charts, data, layout

COLUMNS = ["campaign", *layout.TABLE_METRICS]

filters = layout.start("Campaigns")
if filters is not None:
    version = data.version()
    table = data.metrics("campaign", filters, version).select(COLUMNS)
    layout.table(table, key="campaign_table")
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
        for column, (stage, count) in zip(st.columns(4), funnel.iter_rows(), strict=True):
            column.metric(stage, f"{count:,}")
        left, right = st.columns(2)
        left.altair_chart(charts.bars(funnel, "stage", "messages", "messages"), width="stretch")
        opens = pl.DataFrame(
            {
                "opened by": ["people", "machines"],
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
            st.caption(
                "Machine opens and clicks (Apple Mail Privacy Protection, Gmail's image proxy, "
                "link scanners) come within seconds of delivery; people's are spread out."
            )
        # Links and reasons are long: each table gets the page's width, so its counts show.
        st.subheader("Top links")
        layout.table(data.links(one, version), key="top_links")
        st.subheader("Bounce reasons")
        layout.table(data.bounces(one, version), key="bounce_reasons")
        left, right = st.columns(2)
        left.subheader("Recipient domains")
        domains = data.metrics("domain", one, version).select(
            "domain", "sent", "delivery_rate", "unique_open_rate", "bounce_rate"
        )
        layout.table(domains, key="recipient_domains", where=left)
        right.subheader("Mailbox providers")
        mailboxes = data.metrics("mailbox_provider", one, version).select(
            "mailbox_provider", "sent", "delivery_rate", "unique_open_rate", "machine_opens"
        )
        layout.table(mailboxes, key="mailbox_providers", where=right)

layout.finish()
