"""Deliverability: bounce and complaint rates against the limits mailbox providers enforce."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, data, layout

# Amazon SES puts an account under review at a 5 % bounce rate and 0.1 % complaints;
# Gmail and Yahoo require bulk senders to stay under a 0.3 % spam (complaint) rate.
SES_BOUNCE_REVIEW = 0.05
SES_COMPLAINT_REVIEW = 0.001
GMAIL_YAHOO_SPAM_LIMIT = 0.003

filters = layout.start("Deliverability")
if filters is not None:
    version = data.version()
    st.caption(
        "Red dashed lines: SES review levels (5 % bounces, 0.1 % complaints); Gmail and "
        "Yahoo's 0.3 % spam-rate limit for bulk senders is listed below."
    )
    trend = data.metrics("date", filters, version)
    left, right = st.columns(2)
    left.altair_chart(
        charts.rate_over_time(trend, "date", "bounce_rate", "bounce rate", SES_BOUNCE_REVIEW),
        width="stretch",
    )
    right.altair_chart(
        charts.rate_over_time(
            trend, "date", "complaint_rate", "complaint rate", SES_COMPLAINT_REVIEW
        ),
        width="stretch",
    )
    for dimension in ("provider", "source", "mailbox_provider"):
        frame = data.metrics(dimension, filters, version).drop_nulls(dimension)
        st.subheader(f"By {dimension.replace('_', ' ')}")
        left, right = st.columns(2)
        left.altair_chart(
            charts.bars(
                frame,
                dimension,
                "bounce_rate",
                "bounce rate",
                percent=True,
                threshold=SES_BOUNCE_REVIEW,
            ),
            width="stretch",
        )
        right.altair_chart(
            charts.bars(
                frame,
                dimension,
                "complaint_rate",
                "complaint rate",
                percent=True,
                threshold=GMAIL_YAHOO_SPAM_LIMIT,
            ),
            width="stretch",
        )
    st.subheader("Worst offenders")
    worst = (
        data.metrics("campaign", filters, version)
        .select("campaign", "sent", "bounce_rate", "complaint_rate")
        .sort(["bounce_rate", "complaint_rate"], descending=True, nulls_last=True)
        .head(10)
    )
    over = worst.filter(
        (worst["bounce_rate"] >= SES_BOUNCE_REVIEW)
        | (worst["complaint_rate"] >= GMAIL_YAHOO_SPAM_LIMIT)
    )
    st.write(
        f"{over.height} campaign(s) over a limit."
        if over.height
        else "No campaign is over a provider's limit."
    )
    st.dataframe(worst, hide_index=True, key="worst_offenders")

layout.finish()
