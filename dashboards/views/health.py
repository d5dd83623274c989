"""Ingestion health: are events still arriving, from every source, and is the flusher keeping up."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboards import charts, data, layout

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
left.metric("last flush", lag)
middle.metric("waiting in the spool", f"{int(status.get('pending_bytes', 0)):,} bytes")
right.metric("quarantined requests", f"{int(status.get('quarantine_rows', 0)):,}")
sources = data.sources_health(version)
if sources.is_empty():
    st.info(layout.EMPTY)
else:
    silent = sources.filter(sources["silent"])["source"].to_list()
    if silent:
        st.warning(f"Silent for over an hour: {', '.join(silent)}")
    st.subheader("Last event per source")
    st.dataframe(sources, hide_index=True, key="last_event_per_source")
    arrivals = data.arrivals(version)
    st.subheader("Events per minute, last 6 hours")
    if arrivals.is_empty():
        st.write("Nothing received in the last 6 hours.")
    else:
        st.altair_chart(charts.per_minute(arrivals), width="stretch")
st.subheader("Signature failures")
failures = data.signature_failures()
if failures is None:
    st.write("The receiver is not reachable from here, so its counters cannot be read.")
elif failures.is_empty():
    st.write("None since the receiver started.")
else:
    st.dataframe(failures, hide_index=True, key="signature_failures")

layout.finish()
