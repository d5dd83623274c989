"""Promise 2: whatever arrives twice, whenever it arrives, the lake holds each event once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ingest import create_app
from ingest.flush.flusher import Flusher
from ingest.flush.maintenance import compact
from mailpulse.config import Config
from tests.helpers import event, lake_rows, mailpulse, running_server, signed_headers

DAY = 86_400


@pytest.mark.slow
def test_same_request_ten_times_concurrently_then_after_flush_and_compact(tmp_path: Path) -> None:
    batch = [event("dup-a", "delivered"), event("dup-b", "opened", user_agent="Mozilla/5.0")]
    body = json.dumps(batch).encode()
    with running_server(tmp_path) as server:
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(lambda _: server.post(body).status_code, range(10)))
        assert statuses == [200] * 10
        assert mailpulse("flush", config=server.config_path).returncode == 0
        assert sorted(r["event_id"] for r in lake_rows(server.data_dir)) == ["dup-a", "dup-b"]
        assert len(lake_rows(server.data_dir, "raw")) == 10  # every request is kept as received

        assert mailpulse("compact", config=server.config_path).returncode == 0
        assert server.post(body).status_code == 200
        assert mailpulse("flush", config=server.config_path).returncode == 0
        assert sorted(r["event_id"] for r in lake_rows(server.data_dir)) == ["dup-a", "dup-b"]


def post_at(config: Config, clock: float, body: bytes) -> int:
    app = create_app(config, clock=lambda: clock)
    try:
        response = app.test_client().post(
            "/webhooks/in_house",
            data=body,
            headers=signed_headers(
                config.sources["in_house"].credentials["secret"][0].reveal(), body, int(clock)
            ),
        )
        return response.status_code
    finally:
        app.extensions["mailpulse"].spool.close()


def test_again_twenty_days_later_on_an_injected_clock(config: Config) -> None:
    start = 1_790_000_000.0
    body = json.dumps(event("late-1", timestamp=int(start) - 60)).encode()
    assert post_at(config, start, body) == 200
    assert Flusher(config, clock=lambda: start).flush().events == 1
    later = start + 20 * DAY
    assert post_at(config, later, body) == 200
    result = Flusher(config, clock=lambda: later).flush()
    assert (result.events, result.duplicates) == (0, 1)
    assert [r["event_id"] for r in lake_rows(config.data_dir)] == ["late-1"]


def test_beyond_the_dedup_window_the_lake_itself_is_checked(make_config: Any) -> None:
    """After the seen-ids window is pruned, a copy is still caught by its lake partition."""
    config: Config = make_config(lake={"dedup_window_days": 30})
    start = 1_790_000_000.0
    old = event("ancient-1", timestamp=int(start) - DAY)
    assert post_at(config, start, json.dumps(old).encode()) == 200
    Flusher(config, clock=lambda: start).flush()
    compact(Flusher(config, clock=lambda: start))

    much_later = start + 90 * DAY
    # The first flush at the new time prunes ids older than the window.
    Flusher(config, clock=lambda: much_later).flush()
    from ingest.flush.state import FlusherState

    state = FlusherState(config.state_dir, config.lake_store)
    assert state.already_seen(["ancient-1"]) == set()
    state.close()

    assert post_at(config, much_later, json.dumps(old).encode()) == 200
    result = Flusher(config, clock=lambda: much_later).flush()
    assert (result.events, result.duplicates) == (0, 1)
    assert [r["event_id"] for r in lake_rows(config.data_dir)] == ["ancient-1"]


def test_duplicates_inside_one_body_and_across_sources(make_config: Any, secret: str) -> None:
    config: Config = make_config(
        sources={
            "in_house": {"provider": "generic", "secret": secret},
            "mirror": {"provider": "generic", "secret": secret},
        }
    )
    body = json.dumps([event("same"), event("same"), event("other")]).encode()
    app = create_app(config)
    client = app.test_client()
    for source in ("in_house", "mirror"):
        response = client.post(
            f"/webhooks/{source}", data=body, headers=signed_headers(secret, body)
        )
        assert response.status_code == 200
    app.extensions["mailpulse"].spool.close()
    result = Flusher(config).flush()
    assert result.events == 2
    assert result.duplicates == 4
    assert sorted(r["event_id"] for r in lake_rows(config.data_dir)) == ["other", "same"]
