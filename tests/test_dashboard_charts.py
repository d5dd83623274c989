"""How the dashboard's charts and tables read: whole-number count axes, no ``0.000000``, the
whole time window, the worst groups standing out, and ``-`` for a missing value."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from dashboards import charts, layout
from dashboards.thresholds import BOUNCE_LIMITS


def _spec(chart: Any) -> str:
    return json.dumps(chart.to_dict())


def test_count_axes_have_whole_number_ticks_and_an_all_zero_one_spans_0_to_1() -> None:
    days = [date(2026, 11, d) for d in (1, 2, 3)]
    spec = charts.volume_over_time(
        pl.DataFrame({"date": days, "sent": [0, 0, 0]}), "date", "sent", "messages"
    )
    y = spec.to_dict()["encoding"]["y"]
    assert y["axis"] == {"format": ",d", "tickMinStep": 1}
    assert y["scale"] == {"domain": [0, 1]}
    bars = charts.bars(pl.DataFrame({"stage": ["a"], "messages": [3]}), "stage", "messages", "n")
    assert bars.to_dict()["encoding"]["x"]["axis"] == {"format": ",d", "tickMinStep": 1}


def test_rate_axes_never_print_six_decimals() -> None:
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    frame = pl.DataFrame({"date": days, "bounce_rate": [0.0, 0.0]})
    spec = _spec(charts.rate_over_time(frame, "date", "bounce_rate", "bounce rate", BOUNCE_LIMITS))
    assert '"format": ".2~%"' in spec and '"format": "%"' not in spec


def test_events_per_minute_span_the_whole_window_with_quiet_minutes_at_zero() -> None:
    end = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    start = end - timedelta(hours=1)
    frame = pl.DataFrame(
        {"minute": [end - timedelta(minutes=5)], "source": ["sg"], "events": [7]},
        schema={"minute": pl.Datetime("us", "UTC"), "source": pl.String, "events": pl.Int64},
    )
    chart = charts.per_minute(frame, start, end).to_dict()
    assert chart["encoding"]["x"]["scale"]["domain"] == [start.isoformat(), end.isoformat()]
    rows = next(iter(chart["datasets"].values()))
    assert len(rows) == 61  # every minute of the hour, not just the one with events
    assert sorted(row["events"] for row in rows)[-2:] == [0, 7]


def test_per_group_panels_put_the_worst_first_and_mark_those_over_a_limit() -> None:
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    frame = pl.DataFrame(
        {
            "date": days * 3,
            "provider": ["ok"] * 2 + ["bad"] * 2 + ["worse"] * 2,
            "bounce_rate": [0.01, 0.02, 0.04, 0.06, 0.2, 0.1],
        }
    )
    chart = charts.rate_panels(
        frame, "date", "bounce_rate", "bounce rate", BOUNCE_LIMITS, "provider"
    )
    spec = chart.to_dict()
    assert spec["facet"]["sort"] == ["worse", "bad", "ok"]
    rows = next(iter(spec["datasets"].values()))
    state = {row["provider"]: row["state"] for row in rows}
    assert state == {"worse": charts.OVER, "bad": charts.OVER, "ok": charts.UNDER}


def test_tables_show_a_dash_for_a_missing_value_and_short_rate_headers() -> None:
    frame = pl.DataFrame({"name": ["a", None], "bounce_rate": [0.1, None], "sent": [1, 2]})
    text = layout._as_text(frame, "bounce_rate").to_list()
    assert text == ["10.0%", "-"]
    assert layout._as_text(frame, "name").to_list() == ["a", "-"]
    assert layout.label("unique_open_rate") == "unique open %"
    styled = layout._styled(frame.with_columns(layout._as_text(frame, "name"))).to_html()
    assert "None" not in styled and "10.0%" in styled
