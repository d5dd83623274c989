"""Ingestion health: are events still arriving, from every source, and is the flusher keeping up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from dashboards import charts, data, layout

WINDOWS = {"last hour": 1, "last 6 hours": 6, "last 24 hours": 24}
NO_RECEIVER = """**No receiver is running where this dashboard looks**, so the signature-failure
counters (kept by a running `mailpulse serve`) cannot be shown. Everything else on this page
comes from the lake and is current. This is expected after `make demo`, which stops its
receiver once the traffic is sent: start one with `mailpulse serve` to watch live intake. If a
receiver does run, point the dashboard at it with `mailpulse dashboard --receiver-url URL` or
`receiver_url` in the `[dashboard]` table of mailpulse.toml."""
NO_ACTIONS = """No actions configured here: `mailpulse serve` acts on events as they arrive
(a signed webhook, a Slack message, an ESP suppression) for each `[actions.<name>]` table of
mailpulse.toml; see docs/actions.md."""
ACTION_STATES = """**pending**: recorded and not delivered yet (waiting, or being sent now).
**failing**: of those, the ones that failed at least once and wait for their next attempt.
**dead**: refused for good (a 4xx other than 408, 409, 425, 429) or given up on after the
action's horizon (24 h by default); kept until `mailpulse actions retry` sends them again.
**delivered**: delivered since the receiver started. **circuit** `open`: the destination failed
several times in a row, so its actions wait before one trial delivery (`half-open`)."""

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
    layout.table(
        sources,
        key="last_event_per_source",
        column_config={
            "last_received_at": st.column_config.Column("last received (UTC)"),
            "minutes_since_last": st.column_config.Column("minutes since"),
        },
    )
    window = st.selectbox("Arrivals over", list(WINDOWS), index=1, key="health_window")
    arrivals = data.arrivals(version, WINDOWS[window])
    st.subheader(f"Events per minute, {window}")
    if arrivals.is_empty():
        st.write(f"Nothing received in the {window}.")
    else:
        end = datetime.now(UTC)
        start = end - timedelta(hours=WINDOWS[window])
        st.altair_chart(charts.per_minute(arrivals, start, end), width="stretch")
st.subheader("Signature failures")
failures = data.signature_failures()
if failures is None:
    st.info(NO_RECEIVER)
elif failures.is_empty():
    st.write("None since the receiver started.")
else:
    layout.table(failures, key="signature_failures")
st.subheader("Actions")
actions = data.actions_status()
if actions.is_empty():
    st.write(NO_ACTIONS)
else:
    dead = int(actions["dead"].sum())
    if dead:
        st.warning(
            f"{dead:,} dead-lettered action(s): `mailpulse actions list --dead` shows why, "
            "`mailpulse actions retry ID` (or `--all-dead`) sends them again."
        )
    layout.table(
        actions.drop("updated_at"),
        key="actions",
        column_config={
            "do": st.column_config.Column("kind"),
            "oldest_pending_age_seconds": st.column_config.Column("oldest pending (s)"),
        },
    )
    updated = actions["updated_at"][0]
    st.caption(
        ACTION_STATES
        + (f"\n\nAs of {updated:%Y-%m-%d %H:%M:%S} UTC (the last change)." if updated else "")
    )

layout.finish()
