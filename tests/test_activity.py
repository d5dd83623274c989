"""analytics.activity on a hand-built lake: every answer counted by hand."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from analytics import open_lake
from analytics.activity import (
    activity_after_send,
    bounce_reasons,
    events_per_minute,
    last_event_per_source,
    top_links,
)
from tests.lakes import T0, row, write_lake

H = timedelta(hours=1)
M = timedelta(minutes=1)


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    a, b = "a@x.com", "b@y.com"
    rows = [
        row("1", "sent", a, T0, message_id="m1", campaign="c1", source="sg"),
        row("2", "opened", a, T0 + 2 * H, message_id="m1", campaign="c1", source="sg"),
        row(
            "3",
            "opened",
            a,
            T0 + 2 * H + M,
            message_id="m1",
            campaign="c1",
            source="sg",
            agent="apple_mpp",
        ),
        row(
            "4",
            "clicked",
            a,
            T0 + 3 * H,
            message_id="m1",
            campaign="c1",
            source="sg",
            url="https://e.com/1",
        ),
        row(
            "5",
            "clicked",
            a,
            T0 + 3 * H,
            message_id="m1",
            campaign="c1",
            source="sg",
            url="https://e.com/2",
            agent="scanner",
        ),
        row("6", "sent", b, T0, message_id="m2", campaign="c2", source="mg"),
        row(
            "7",
            "bounced",
            b,
            T0 + M,
            message_id="m2",
            campaign="c2",
            source="mg",
            bounce_class="hard",
            smtp_status="5.1.1",
            reason="no such user",
        ),
    ]
    write_lake(tmp_path, rows)
    return tmp_path


def test_activity_after_send_splits_people_from_machines(lake_dir: Path) -> None:
    with open_lake(lake_dir) as lake:
        got = activity_after_send(lake, campaign="c1").to_dicts()
    assert got == [
        {"hours_after_send": 2, "event_type": "opened", "who": "human", "events": 1},
        {"hours_after_send": 2, "event_type": "opened", "who": "machine", "events": 1},
        {"hours_after_send": 3, "event_type": "clicked", "who": "human", "events": 1},
        {"hours_after_send": 3, "event_type": "clicked", "who": "machine", "events": 1},
    ]


def test_top_links_rank_by_human_clicks(lake_dir: Path) -> None:
    with open_lake(lake_dir) as lake:
        got = top_links(lake).to_dicts()
        assert top_links(lake, campaign="c2").is_empty()
    assert got == [
        {"url": "https://e.com/1", "human_clicks": 1, "all_clicks": 1},
        {"url": "https://e.com/2", "human_clicks": 0, "all_clicks": 1},
    ]


def test_bounce_reasons_and_source_filter(lake_dir: Path) -> None:
    with open_lake(lake_dir) as lake:
        got = bounce_reasons(lake, source="mg").to_dicts()
        assert bounce_reasons(lake, source="sg").is_empty()
    assert got == [
        {"bounce_class": "hard", "smtp_status": "5.1.1", "reason": "no such user", "bounces": 1}
    ]


def test_arrivals_per_minute_and_last_event(lake_dir: Path) -> None:
    with open_lake(lake_dir) as lake:
        per_minute = events_per_minute(lake, T0 + 2 * H)
        last = {r["source"]: r for r in last_event_per_source(lake).to_dicts()}
    assert per_minute["events"].sum() == 4 and set(per_minute["source"]) == {"sg"}
    assert last["sg"]["events"] == 5 and last["mg"]["events"] == 2
    assert last["mg"]["last_received_at"].replace(tzinfo=T0.tzinfo) == T0 + M
