"""The flusher's own guarantees: quarantine and replay, compaction, journal recovery."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from flask.testing import FlaskClient

from ingest.flush.flusher import Flusher
from ingest.flush.maintenance import compact, quarantine_frame, replay_quarantine
from ingest.flush.state import FlusherState
from mailpulse import lake
from mailpulse.config import Config
from tests.helpers import event, lake_rows, signed_headers


def post(client: FlaskClient, secret: str, payload: Any) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = client.post("/webhooks/in_house", data=body, headers=signed_headers(secret, body))
    assert response.status_code == 200, response.json


def test_bad_events_are_quarantined_alone_and_good_ones_stored(
    client: FlaskClient, config: Config, secret: str
) -> None:
    post(client, secret, [event("good-1"), {"id": "bad-1", "type": "exploded"}, event("good-2")])
    post(client, secret, b"this is not json")
    result = Flusher(config).flush()
    assert (result.events, result.quarantined) == (2, 2)
    assert sorted(r["event_id"] for r in lake_rows(config.data_dir)) == ["good-1", "good-2"]
    quarantined = quarantine_frame(Flusher(config))
    assert sorted(quarantined["stage"].to_list()) == ["map", "parse"]
    assert any("not one of the event types" in r for r in quarantined["reason"].to_list())
    rows = lake_rows(config.data_dir, "quarantine")
    payloads = {r["stage"]: bytes(r["payload"]) for r in rows}
    assert payloads["parse"] == b"this is not json"  # kept whole, replayable
    assert json.loads(payloads["map"]) == {"id": "bad-1", "type": "exploded"}


def test_the_same_bad_payload_twice_is_quarantined_once(
    client: FlaskClient, config: Config, secret: str
) -> None:
    post(client, secret, b"[1, 2")
    post(client, secret, b"[1, 2")
    Flusher(config).flush()
    post(client, secret, b"[1, 2")
    Flusher(config).flush()
    assert len(lake_rows(config.data_dir, "quarantine")) == 1


def test_replay_moves_what_now_maps_into_the_lake(
    client: FlaskClient, make_config: Any, secret: str
) -> None:
    """A source removed from the config quarantines its requests; restoring it and replaying
    brings them in."""
    config: Config = make_config()
    post(client, secret, [event("r-1"), event("r-2")])
    post(client, secret, {"id": "still-bad"})
    without_source = replace(config, sources={})
    assert Flusher(without_source).flush().quarantined == 2
    assert set(quarantine_frame(Flusher(config))["stage"]) == {"route"}
    assert lake_rows(config.data_dir) == []

    result, remaining = replay_quarantine(Flusher(config))
    assert result.events == 2
    assert remaining == 1
    assert sorted(r["event_id"] for r in lake_rows(config.data_dir)) == ["r-1", "r-2"]
    left = lake_rows(config.data_dir, "quarantine")
    assert len(left) == 1 and "type" in left[0]["reason"]

    again, remaining = replay_quarantine(Flusher(config))
    assert (again.events, remaining) == (0, 1)
    assert len(lake_rows(config.data_dir)) == 2


def test_compaction_merges_files_and_keeps_one_row_per_event(
    client: FlaskClient, config: Config, secret: str
) -> None:
    for n in range(4):
        post(client, secret, [event(f"c-{n}", timestamp=1_795_773_600 + n)])
        Flusher(config).flush()
    files = [Path(path) for path in lake.list_files(config.lake_store, "events")]
    assert len(files) == 4
    # A copy of a file with a new batch number: the state compaction must repair.
    duplicate = files[0].with_name("part-0000009999-deadbeef.parquet")
    duplicate.write_bytes(files[0].read_bytes())
    result = compact(Flusher(config))
    assert result.rows_removed == 1
    after = lake.list_files(config.lake_store, "events")
    assert len(after) == 1
    assert list(config.lake_dir.glob("events/date=*/*.parquet")) == [Path(after[0])]
    assert sorted(r["event_id"] for r in lake_rows(config.data_dir)) == [f"c-{n}" for n in range(4)]


def test_recovery_removes_files_of_an_uncommitted_batch(config: Config) -> None:
    """A flusher killed after writing files but before its commit leaves them journaled."""
    frame = pl.DataFrame({"x": [1]})
    store = config.lake_store
    orphan = lake.plan_path(store, "events", "2026-11-27", 1)
    state = FlusherState(config.state_dir, store)
    state.begin(1, [orphan])
    store.write_parquet(frame, orphan)
    state.close()
    assert Path(orphan).exists()
    Flusher(config).flush()
    assert not Path(orphan).exists()
    state = FlusherState(config.state_dir, store)
    assert state.last_batch() == 0
    state.close()


def test_recovery_finishes_a_committed_replacement(config: Config, tmp_path: Path) -> None:
    store = config.lake_store
    old = lake.plan_path(store, "events", "2026-11-27", 1)
    new = lake.plan_path(store, "events", "2026-11-27", 2)
    store.write_parquet(pl.DataFrame({"x": [1]}), old)
    store.write_parquet(pl.DataFrame({"x": [1]}), new)
    state = FlusherState(config.state_dir, store)
    state.begin(2, [new], [old])
    state.db.execute("UPDATE journal SET phase = 'committed'")  # crashed right after commit
    state.close()
    Flusher(config).flush()
    assert Path(new).exists() and not Path(old).exists()


def test_flushed_records_are_acknowledged_and_the_spool_holds_nothing(
    client: FlaskClient, config: Config, secret: str, app: Any
) -> None:
    post(client, secret, [event("s-1")])
    spool = app.extensions["mailpulse"].spool
    assert spool.pending_bytes() > 0
    Flusher(config).flush()
    assert spool.pending_bytes() == 0
    assert spool.claim(1 << 20, 100).records == []
    assert FlusherState(config.state_dir, config.lake_store).spool_position() > 0


def test_a_flush_ends_while_requests_keep_arriving(config: Config, secret: str) -> None:
    """A pass drains what was spooled when it started, so it ends under steady traffic."""
    import threading

    from ingest import create_app

    app = create_app(config)
    client = app.test_client()
    stop = threading.Event()

    def keep_posting() -> None:
        n = 0
        while not stop.is_set():
            post(client, secret, [event(f"steady-{n}")])
            n += 1

    for n in range(200):
        post(client, secret, [event(f"early-{n}")])
    sender = threading.Thread(target=keep_posting)
    sender.start()
    try:
        result = Flusher(config, batch_bytes=8192).flush(wait_seconds=0)
    finally:
        stop.set()
        sender.join()
    assert result.events >= 200
    # It stopped at what was there when it began (plus at most the batch in hand).
    assert result.requests < 200 + 60, result
    app.extensions["mailpulse"].spool.close()
    Flusher(config).flush()
    ids = {r["event_id"] for r in lake_rows(config.data_dir)}
    assert {f"early-{n}" for n in range(200)} <= ids


def test_metrics_in_one_process_count_requests_and_read_the_flusher_status(
    client: FlaskClient, config: Config, secret: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    post(client, secret, [event("m-1"), {"id": "bad"}])
    Flusher(config).flush()
    text = client.get("/metrics").data.decode()
    assert 'mailpulse_events_total{outcome="stored",source="in_house"} 1.0' in text
    assert 'mailpulse_events_total{outcome="quarantined",source="in_house"} 1.0' in text
    assert "mailpulse_quarantine_requests 1.0" in text
    assert text.count("# TYPE mailpulse_requests_total counter") == 1


def test_events_dated_decades_away_are_stored_with_a_warning_and_counted(
    client: FlaskClient, config: Config, secret: str, monkeypatch: Any, caplog: Any
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    placeholder = 100_000_000  # 1973-03-03, a docs sample's made-up timestamp
    far_ahead = 4_102_444_800  # 2100-01-01
    post(
        client,
        secret,
        [
            event("now-1"),
            event("old-1", timestamp=placeholder),
            event("late-1", timestamp=far_ahead),
        ],
    )
    with caplog.at_level("WARNING", logger="ingest.flush.flusher"):
        assert Flusher(config).flush().events == 3
    warnings = [r.getMessage() for r in caplog.records if "implausibly" in r.getMessage()]
    assert len(warnings) == 1 and "2 event(s) from source in_house" in warnings[0]
    assert "1973-03-03" in warnings[0]
    text = client.get("/metrics").data.decode()
    assert 'mailpulse_events_implausible_time_total{source="in_house"} 2.0' in text
