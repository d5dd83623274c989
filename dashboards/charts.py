"""Charts a person reads at a glance: labelled axes, units, thresholds drawn as rules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import altair as alt
import polars as pl

# Altair builds charts by chained calls its stubs type as Any; pages only hand them on.
Chart = Any

# Percent ticks without trailing zeros ("5%", "0.1%", "0.05%"); counts as whole numbers only.
PERCENT = alt.Axis(format=".2~%")
OVER = "over a limit"
UNDER = "under the limits"


def _count_axis(shorthand: str, title: str, values: pl.Series | None = None) -> Any:
    """A count axis with whole-number ticks; an all-zero one still spans 0 to 1."""
    empty = values is not None and not (values.max() or 0)
    return alt.Y(
        shorthand,
        title=title,
        axis=alt.Axis(format=",d", tickMinStep=1),
        scale=alt.Scale(domain=[0, 1]) if empty else alt.Undefined,
    )


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
        "y": alt.Y(f"{rate}:Q", title=f"{title} (%)", axis=PERCENT),
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
            y=alt.Y("value:Q", title=f"{title} (%)", axis=PERCENT),
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
            y=_count_axis(f"{count}:Q", title, frame[count]),
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
            y=_count_axis(f"sum({count}):Q", title),
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
    axis = PERCENT if percent else alt.Axis(format=",d", tickMinStep=1)
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
            y=_count_axis("sum(events):Q", "events"),
            color=alt.Color("who:N", title="opened or clicked by"),
            column=alt.Column("event_type:N", title=None),
            tooltip=["hours_after_send", "event_type", "who", "sum(events)"],
        )
    )


def per_minute(frame: pl.DataFrame, start: datetime, end: datetime) -> Chart:
    """Events received per minute, one line per source, over the whole window from ``start``
    to ``end`` (minutes without an event count 0, so a quiet spell shows as one)."""
    minutes = pl.datetime_range(
        _minute(start), _minute(end), "1m", time_zone="UTC", eager=True
    ).alias("minute")
    counts = frame.with_columns(pl.col("minute").dt.convert_time_zone("UTC"))
    whole = (
        minutes.to_frame()
        .join(counts.select("source").unique(), how="cross")
        .join(counts, on=["minute", "source"], how="left")
        .with_columns(pl.col("events").fill_null(0))
    )
    hours = (end - start).total_seconds() / 3600
    return (
        alt.Chart(whole)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X(
                "minute:T",
                title="received (UTC)",
                scale=alt.Scale(domain=[_minute(start).isoformat(), _minute(end).isoformat()]),
                axis=alt.Axis(format="%H:%M", tickCount=min(12, max(4, int(hours * 2)))),
            ),
            y=_count_axis("events:Q", "events per minute", whole["events"]),
            color=alt.Color("source:N", title="source"),
            tooltip=[
                alt.Tooltip("minute:T", title="minute (UTC)", format="%Y-%m-%d %H:%M"),
                "source:N",
                "events:Q",
            ],
        )
    )


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def rate_panels(
    frame: pl.DataFrame,
    x: str,
    rate: str,
    title: str,
    limits: Mapping[str, float],
    facet: str,
    columns: int = 3,
) -> Chart:
    """One small chart of ``rate`` per ``facet`` value, worst first: a group whose rate
    crossed the lowest of ``limits`` on any day is drawn red, the others blue, so the page
    answers "which one is going wrong" at a glance. Each limit is a dashed red rule."""
    lowest = min(limits.values())
    worst = (
        frame.group_by(facet)
        .agg(pl.col(rate).max().alias("_worst"))
        .sort("_worst", descending=True, nulls_last=True)
    )
    data = frame.join(worst, on=facet).with_columns(
        pl.when(pl.col("_worst") >= lowest)
        .then(pl.lit(OVER))
        .otherwise(pl.lit(UNDER))
        .alias("state")
    )
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=_day_axis(x, title=None),
            y=alt.Y(f"{rate}:Q", title=f"{title} (%)", axis=PERCENT),
            color=alt.Color(
                "state:N",
                title=None,
                scale=alt.Scale(domain=[OVER, UNDER], range=["#d62728", "#4c78a8"]),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=[
                alt.Tooltip(f"{facet}:N"),
                alt.Tooltip(f"{x}:T"),
                alt.Tooltip(f"{rate}:Q", format=".2%"),
            ],
        )
    )
    rules = [
        alt.Chart().mark_rule(color="red", strokeDash=[4, 4]).encode(y=alt.datum(value))
        for value in limits.values()
    ]
    return (
        alt.layer(line, *rules, data=data)
        .properties(width=110, height=90)
        .facet(
            facet=alt.Facet(f"{facet}:N", title=None, sort=worst[facet].to_list()),
            columns=columns,
        )
        .resolve_scale(y="shared")
    )


def _day_axis(x: str, title: str | None = "date sent (UTC)") -> Any:
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
