"""Deliverability: bounce and complaint rates over time against the limits providers enforce."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, data, layout
from dashboards.thresholds import BOUNCE_LIMITS, COMPLAINT_LIMITS, offenders

SPLITS = {"provider": "ESP", "source": "sending source", "mailbox_provider": "mailbox provider"}

filters = layout.start("Deliverability")
if filters is not None:
    version = data.version()
    st.caption(
        "Dashed red lines: Amazon SES reviews an account at 5 % bounces or 0.1 % complaints; "
        "Gmail and Yahoo require bulk senders to stay under 0.3 % spam complaints."
    )
    trend = data.metrics("date", filters, version)
    left, right = st.columns(2)
    left.altair_chart(
        charts.rate_over_time(trend, "date", "bounce_rate", "bounce rate", BOUNCE_LIMITS),
        width="stretch",
    )
    right.altair_chart(
        charts.rate_over_time(trend, "date", "complaint_rate", "complaint rate", COMPLAINT_LIMITS),
        width="stretch",
    )
    totals = {"campaign": data.metrics("campaign", filters, version)}
    for dimension, name in SPLITS.items():
        over_time = data.metrics(("date", dimension), filters, version).drop_nulls(dimension)
        totals[dimension] = data.metrics(dimension, filters, version)
        st.subheader(f"By {name}")
        st.caption(f"One chart per {name}, worst first; red: crossed a limit on at least one day.")
        left, right = st.columns(2)
        left.altair_chart(
            charts.rate_panels(
                over_time, "date", "bounce_rate", "bounce rate", BOUNCE_LIMITS, dimension
            ),
            width="content",
        )
        right.altair_chart(
            charts.rate_panels(
                over_time, "date", "complaint_rate", "complaint rate", COMPLAINT_LIMITS, dimension
            ),
            width="content",
        )
    st.subheader("Worst offenders")
    worst = offenders(totals)
    over = worst.filter(worst["over"] != "").height
    st.write(
        f"{over} of the worst {worst.height} are over a limit (campaigns, ESPs, sources and "
        "mailbox providers, most over first)."
        if over
        else "Nothing is over a provider's limit."
    )
    layout.table(worst, key="worst_offenders")

layout.finish()
