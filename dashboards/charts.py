"""Charts a person reads at a glance: labelled axes, units, thresholds drawn as rules."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

# Altair builds charts by chained calls its stubs type as Any; pages only hand them on.
Chart = Any


def rate_over_time(
    frame: pl.DataFrame, x: str, rate: str, title: str, threshold: float | None = None
) -> Chart:
    """A rate per period as a line (percent axis), with an optional threshold rule."""
    line = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:T", title="date sent (UTC)"),
            y=alt.Y(f"{rate}:Q", title=title, axis=alt.Axis(format="%")),
            tooltip=[alt.Tooltip(f"{x}:T"), alt.Tooltip(f"{rate}:Q", format=".2%")],
        )
    )
    if threshold is None:
        return line
    return line + _rule(threshold)


def bars(
    frame: pl.DataFrame,
    category: str,
    value: str,
    title: str,
    *,
    percent: bool = False,
    threshold: float | None = None,
) -> Chart:
    """Horizontal bars of ``value`` per ``category``."""
    axis = alt.Axis(format="%") if percent else alt.Axis()
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y(f"{category}:N", title=category.replace("_", " "), sort="-x"),
            x=alt.X(f"{value}:Q", title=title, axis=axis),
            tooltip=[category, alt.Tooltip(f"{value}:Q", format=".2%" if percent else ",")],
        )
    )
    if threshold is None:
        return chart
    return chart + _rule(threshold, axis="x")


def stacked_hours(frame: pl.DataFrame) -> Chart:
    """Opens and clicks per hour after sending, human and machine stacked."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("hours_after_send:O", title="hours after sending"),
            y=alt.Y("sum(events):Q", title="events"),
            color=alt.Color("who:N", title="opened or clicked by"),
            column=alt.Column("event_type:N", title=None),
            tooltip=["hours_after_send", "event_type", "who", "sum(events)"],
        )
    )


def per_minute(frame: pl.DataFrame) -> Chart:
    """Events received per minute, one line per source."""
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("minute:T", title="received (UTC)"),
            y=alt.Y("events:Q", title="events per minute"),
            color=alt.Color("source:N", title="source"),
        )
    )


def _rule(value: float, axis: str = "y") -> Chart:
    rule = alt.Chart(pl.DataFrame({"limit": [value]})).mark_rule(color="red", strokeDash=[4, 4])
    return rule.encode(**{axis: alt.X("limit:Q") if axis == "x" else alt.Y("limit:Q")})
