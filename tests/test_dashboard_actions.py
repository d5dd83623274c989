"""The Actions section of the ingestion-health page, over the dispatcher's status snapshot.

The snapshot is written the way ``mailpulse serve`` writes it (:func:`mailpulse.lake.write_status`
with ``ACTIONS_STATUS_FILE``); the page must show its numbers, and say so when there is none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analytics.actions import actions_status
from mailpulse.demo import free_port
from mailpulse.lake import ACTIONS_STATUS_FILE, write_status
from tests.test_dashboard import run
from tests.test_dashboard import use_lake as use_lake  # a fixture: shared, not redefined


def snapshot(now: float) -> dict[str, Any]:
    """A status as the dispatcher publishes it: a webhook in trouble, an idle Slack action."""
    return {
        "updated_at": now - 5,
        "actions": {
            "crm": {
                "pending": 3,
                "sending": 1,
                "failing": 2,
                "delivered": 10,
                "dead": 1,
                "oldest_pending_at": now - 120,
                "do": "webhook",
                "circuit": "open",
            },
            "team-alerts": {
                "pending": 0,
                "sending": 0,
                "failing": 0,
                "delivered": 7,
                "dead": 0,
                "oldest_pending_at": None,
                "do": "slack",
                "circuit": "closed",
            },
        },
        "outcomes": {"crm": {"delivered": 10, "retried": 6, "dead": 1}},
        "attempts": {"crm": 17, "team-alerts": 7},
        "latency": {"buckets": [0.5, 1.0], "counts": {}, "sum": {}},
    }


@pytest.fixture
def health(tmp_path: Path, use_lake: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the health page on an empty lake in ``tmp_path`` (no receiver to ask)."""
    (tmp_path / "data").mkdir()
    use_lake(tmp_path)
    monkeypatch.setenv("MAILPULSE_RECEIVER_URL", f"http://127.0.0.1:{free_port()}")
    return lambda: run("health")


def actions_table(app: AppTest) -> pd.DataFrame:
    (table,) = [frame.value for frame in app.dataframe if "circuit" in frame.value.columns]
    return table


def test_the_section_shows_each_actions_numbers(tmp_path: Path, health: Any) -> None:
    now = time.time()
    write_status(tmp_path / "data" / "state", snapshot(now), name=ACTIONS_STATUS_FILE)
    app = health()
    assert not app.exception, app.exception
    assert "Actions" in [header.value for header in app.subheader]
    table = actions_table(app).set_index("action")
    assert list(table.index) == ["crm", "team-alerts"]
    assert table.loc[
        "crm", ["do", "pending", "failing", "dead", "delivered", "circuit"]
    ].tolist() == [
        "webhook",
        4,  # waiting and being sent
        2,
        1,
        10,
        "open",
    ]
    age = table.loc["crm", "oldest_pending_age_seconds"]
    assert 120 <= int(str(age).replace(",", "")) <= 120 + (time.time() - now) + 1
    assert table.loc["team-alerts", "oldest_pending_age_seconds"] == "-"  # nothing waits
    assert table.loc["team-alerts", ["do", "pending", "dead", "circuit"]].tolist() == [
        "slack",
        0,
        0,
        "closed",
    ]
    (warning,) = [box.value for box in app.warning]
    assert "1 dead-lettered action" in warning and "mailpulse actions retry" in warning
    caption = " ".join(caption.value for caption in app.caption)
    for meaning in ("**pending**", "**failing**", "**dead**", "**delivered**", "**circuit**"):
        assert meaning in caption


def test_the_section_says_when_no_action_is_configured(health: Any) -> None:
    app = health()
    assert not app.exception, app.exception
    assert "Actions" in [header.value for header in app.subheader]
    assert any("No actions configured" in text.value for text in app.markdown)
    assert not [frame for frame in app.dataframe if "circuit" in frame.value.columns]
    assert not app.warning


def test_the_reader_is_the_snapshot_in_one_row_per_action(tmp_path: Path) -> None:
    now = time.time()
    write_status(tmp_path, snapshot(now), name=ACTIONS_STATUS_FILE)
    frame = actions_status(tmp_path, now=now + 30)
    assert frame.drop("updated_at").rows() == [
        ("crm", "webhook", 4, 2, 1, 10, 150, "open"),
        ("team-alerts", "slack", 0, 0, 0, 7, None, "closed"),
    ]
    assert frame["updated_at"][0].timestamp() == pytest.approx(now - 5)


@pytest.mark.parametrize("content", [None, b"{not json", b"[]", b'{"actions": {}}'])
def test_no_or_an_unreadable_snapshot_is_no_actions(tmp_path: Path, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / ACTIONS_STATUS_FILE).write_bytes(content)
    frame = actions_status(tmp_path)
    assert frame.is_empty() and "circuit" in frame.columns
