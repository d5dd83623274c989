"""Charts a person reads at a glance: labelled axes, units, thresholds drawn as rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import altair as alt
import polars as pl

# Altair builds charts by chained calls its stubs type as Any; pages only hand them on.
Chart = Any


def rate_over_time(
    frame: pl.DataFrame,
    x: str,
    rate: str,
    title: str,
    limits: Mapping[str, float] | None = None,
    color: str | None = None,
) -> Chart:
    """A rate per period as a line (percent axis), one line per ``color`` value when given,
    with each of ``limits`` (label: rate) drawn as a labelled dashed red rule."""
    encoding: dict[str, Any] = {
        "x": _day_axis(x),
        "y": alt.Y(f"{rate}:Q", title=f"{title} (%)", axis=alt.Axis(format="%")),
        "tooltip": [alt.Tooltip(f"{x}:T"), alt.Tooltip(f"{rate}:Q", format=".2%")],
    }
    if color is not None:
        encoding["color"] = alt.Color(f"{color}:N", title=color.replace("_", " "))
        encoding["tooltip"].insert(0, alt.Tooltip(f"{color}:N"))
    chart = alt.Chart(frame).mark_line(point=True).encode(**encoding)
    for label, value in (limits or {}).items():
        chart = chart + _rule(value, label)
    return chart


def rates_over_time(frame: pl.DataFrame, x: str, rates: Mapping[str, str], title: str) -> Chart:
    """Several rates per period as lines on one percent axis (``rates``: column -> label)."""
    long = frame.select(x, *rates).unpivot(index=x, variable_name="rate", value_name="value")
    long = long.with_columns(pl.col("rate").replace_strict(dict(rates)))
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=_day_axis(x),
            y=alt.Y("value:Q", title=f"{title} (%)", axis=alt.Axis(format="%")),
            color=alt.Color("rate:N", title=None, sort=list(rates.values())),
            tooltip=[alt.Tooltip(f"{x}:T"), "rate:N", alt.Tooltip("value:Q", format=".2%")],
        )
    )


def volume_over_time(frame: pl.DataFrame, x: str, count: str, title: str) -> Chart:
    """A count per period as bars."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=_day_axis(x),
            y=alt.Y(f"{count}:Q", title=title),
            tooltip=[alt.Tooltip(f"{x}:T"), alt.Tooltip(f"{count}:Q", format=",")],
        )
    )


def stacked_per_day(frame: pl.DataFrame, x: str, count: str, color: str, title: str) -> Chart:
    """Counts per day as bars, stacked by ``color``."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=_day_axis(x, "day (UTC)"),
            y=alt.Y(f"sum({count}):Q", title=title),
            color=alt.Color(f"{color}:N", title=color.replace("_", " ")),
            tooltip=[alt.Tooltip(f"{x}:T"), f"{color}:N", alt.Tooltip(f"sum({count}):Q")],
        )
    )


def bars(
    frame: pl.DataFrame,
    category: str,
    value: str,
    title: str,
    *,
    percent: bool = False,
    limits: Mapping[str, float] | None = None,
) -> Chart:
    """Horizontal bars of ``value`` per ``category``, with ``limits`` as labelled rules."""
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
    for label, limit in (limits or {}).items():
        chart = chart + _rule(limit, label, axis="x")
    return chart


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
        .mark_line(point=True)  # points: a burst inside one minute is still visible
        .encode(
            x=alt.X("utcyearmonthdatehoursminutes(minute):T", title="received (UTC)"),
            y=alt.Y("events:Q", title="events per minute"),
            color=alt.Color("source:N", title="source"),
            tooltip=[
                alt.Tooltip("utcyearmonthdatehoursminutes(minute):T", title="minute (UTC)"),
                "source:N",
                "events:Q",
            ],
        )
    )


def _day_axis(x: str, title: str = "date sent (UTC)") -> Any:
    """A UTC date axis with one tick a day at most, labelled like "Nov 23"."""
    return alt.X(
        f"utcyearmonthdate({x}):T",
        title=title,
        axis=alt.Axis(format="%b %d", tickCount="day", labelOverlap=True),
    )


def _rule(value: float, label: str, axis: str = "y") -> Chart:
    """A dashed red line at ``value``, named by ``label`` where it starts."""
    limit = pl.DataFrame({"limit": [value], "label": [label]})
    if axis == "y":  # a horizontal line, named at the left edge just above it
        base = alt.Chart(limit).encode(y=alt.Y("limit:Q"))
        text = base.mark_text(color="red", align="left", dx=4, dy=-6).encode(
            x=alt.value(0), text="label:N"
        )
    else:  # a vertical line, named at the top just right of it
        base = alt.Chart(limit).encode(x=alt.X("limit:Q"))
        text = base.mark_text(color="red", align="left", dx=4, dy=8).encode(
            y=alt.value(0), text="label:N"
        )
    return base.mark_rule(color="red", strokeDash=[4, 4]) + text
