"""Ingestion health: are events still arriving, from every source, and is the flusher keeping up."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboards import charts, data, layout

WINDOWS = {"last hour": 1, "last 6 hours": 6, "last 24 hours": 24}

st.title("Ingestion health")
version = data.version()
status = data.flusher_status()
left, middle, right = st.columns(3)
last_flush = status.get("last_flush_at")
lag = (
    f"{datetime.now(UTC).timestamp() - float(last_flush):,.0f} s ago"
    if last_flush
    else "no flush yet"
)
left.metric("last flush (flush lag)", lag)
middle.metric("waiting in the spool", f"{int(status.get('pending_bytes', 0)):,} bytes")
right.metric("quarantined requests", f"{int(status['quarantine_rows']):,}")
if status["quarantine_rows"]:
    st.caption("`mailpulse quarantine list` shows why; `mailpulse quarantine replay` retries.")
sources = data.sources_health(version)
if sources.is_empty():
    st.info(layout.EMPTY)
else:
    silent = sources.filter(sources["silent"])["source"].to_list()
    if silent:
        hours = int(data.SILENT_AFTER.total_seconds() // 3600)
        st.warning(
            f"No event for over {hours} hour(s) from: {', '.join(silent)}. Check the ESP's "
            "webhook settings and its delivery log for failed calls."
        )
    else:
        st.success("Every source sent an event within the last hour.")
    st.subheader("Last event per source")
    st.dataframe(
        sources,
        hide_index=True,
        key="last_event_per_source",
        column_config={
            "last_received_at": st.column_config.DatetimeColumn(
                "last received (UTC)", format="YYYY-MM-DD HH:mm:ss"
            ),
            "minutes_since_last": st.column_config.NumberColumn("minutes since", format="%d"),
        },
    )
    window = st.selectbox("Arrivals over", list(WINDOWS), index=1, key="health_window")
    arrivals = data.arrivals(version, WINDOWS[window])
    st.subheader(f"Events per minute, {window}")
    if arrivals.is_empty():
        st.write(f"Nothing received in the {window}.")
    else:
        st.altair_chart(charts.per_minute(arrivals), width="stretch")
st.subheader("Signature failures")
failures = data.signature_failures()
if failures is None:
    st.write(
        "The receiver is not reachable from here, so its counters cannot be read "
        "(`[dashboard] receiver_url` in mailpulse.toml, or `--receiver-url`)."
    )
elif failures.is_empty():
    st.write("None since the receiver started.")
else:
    st.dataframe(failures, hide_index=True, key="signature_failures")

layout.finish()
