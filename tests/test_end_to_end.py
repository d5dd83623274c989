"""The whole path through the real server: signed POSTs -> spool -> flush -> Parquet.

The lake is read with DuckDB directly, as any outside reader would, and every column of
DESIGN.md's event schema is checked.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest
import requests

from tests.helpers import event, lake_rows, mailpulse, running_server

pytestmark = pytest.mark.slow

T0 = 1_795_773_600  # 2026-11-27T10:00:00Z
SCHEMA_TYPES = {
    "event_id": "VARCHAR",
    "source": "VARCHAR",
    "provider": "VARCHAR",
    "event_type": "VARCHAR",
    "bounce_class": "VARCHAR",
    "occurred_at": "TIMESTAMP WITH TIME ZONE",
    "received_at": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE",
    "recipient": "VARCHAR",
    "recipient_domain": "VARCHAR",
    "message_id": "VARCHAR",
    "campaign": "VARCHAR",
    "tags": "VARCHAR[]",
    "metadata": "VARCHAR",
    "url": "VARCHAR",
    "user_agent": "VARCHAR",
    "ip": "VARCHAR",
    "smtp_status": "VARCHAR",
    "reason": "VARCHAR",
    "agent": "VARCHAR",
    "raw": "VARCHAR",
    "parser_version": "INTEGER",
}


def test_three_body_shapes_land_with_every_column(tmp_path: Path) -> None:
    bounce = event(
        "b-1",
        "bounced",
        timestamp="2026-11-27T10:00:00Z",
        email=" Bob@Example.ORG ",
        message_id="m-1",
        campaign="winter",
        bounce_class="hard",
        smtp_status="5.1.1",
        reason="550 5.1.1 no such user",
        tags=["promo", "eu"],
        metadata={"customer": 42},
    )
    opened = event(
        "o-1",
        "opened",
        timestamp=T0 + 60,
        email="ann@example.com",
        message_id="m-2",
        campaign="winter",
        user_agent="Mozilla/5.0",
        ip="17.58.0.1",
    )
    clicked = event(
        "c-1",
        "clicked",
        timestamp=T0 - 86_400,
        email="ann@example.com",
        message_id="m-2",
        campaign="winter",
        url="https://shop.example/a",
        user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/131.0",
        ip="203.0.113.9",
    )
    with running_server(tmp_path) as server:
        before = datetime.now(tz=UTC)
        bodies = [json.dumps(shape).encode() for shape in (bounce, [opened], {"events": [clicked]})]
        for body in bodies:  # one object, an array, {"events": [...]}
            assert server.post(body).status_code == 200
        assert mailpulse("flush", config=server.config_path).returncode == 0

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = f"{tmp_path}/data/lake/events/*/*.parquet"
    described = {
        row[0]: row[1]
        for row in con.sql(
            f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning=true)"
        ).fetchall()
    }
    for column, kind in SCHEMA_TYPES.items():
        assert described.get(column) == kind, (column, described.get(column))

    rows = {row["event_id"]: row for row in lake_rows(tmp_path / "data")}
    assert set(rows) == {"b-1", "o-1", "c-1"}
    b = rows["b-1"]
    assert (b["source"], b["provider"], b["event_type"]) == ("in_house", "generic", "bounced")
    assert b["bounce_class"] == "hard"
    assert b["occurred_at"] == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert before <= b["received_at"] <= datetime.now(tz=UTC)
    assert b["date"] == date(2026, 11, 27)
    assert (b["recipient"], b["recipient_domain"]) == ("bob@example.org", "example.org")
    assert (b["message_id"], b["campaign"], b["tags"]) == ("m-1", "winter", ["promo", "eu"])
    assert json.loads(b["metadata"]) == {"customer": 42}
    assert (b["smtp_status"], b["reason"]) == ("5.1.1", "550 5.1.1 no such user")
    assert (b["url"], b["user_agent"], b["ip"], b["agent"]) == (None, None, None, None)
    assert json.loads(b["raw"]) == bounce
    assert b["parser_version"] == 1

    o = rows["o-1"]
    assert (o["agent"], o["user_agent"], o["ip"]) == ("apple_mpp", "Mozilla/5.0", "17.58.0.1")
    c = rows["c-1"]
    assert (c["event_type"], c["url"], c["agent"]) == ("clicked", "https://shop.example/a", "human")
    assert c["date"] == date(2026, 11, 26)  # partitioned by the UTC date it happened

    partitions = sorted(p.name for p in (tmp_path / "data/lake/events").iterdir())
    assert partitions == ["date=2026-11-26", "date=2026-11-27"]
    raw = lake_rows(tmp_path / "data", "raw")
    assert len(raw) == 3
    assert all("x-webhook-signature" not in json.loads(r["headers"]) for r in raw)
    assert all(json.loads(r["headers"])["x-webhook-timestamp"] for r in raw)
    assert sorted(bytes(r["body"]) for r in raw) == sorted(bodies)  # exactly as received


def test_sigterm_drains_in_flight_requests_and_flushes(tmp_path: Path) -> None:
    """Requests answered 200 before SIGTERM are in the lake once the server has exited."""
    with running_server(tmp_path, workers=2) as server:
        accepted: list[str] = []
        lock = threading.Lock()

        def send(worker: int) -> None:
            for n in range(40):
                try:
                    response = server.post(event(f"drain-{worker}-{n}"))
                except requests.RequestException:
                    return
                if response.status_code == 200:
                    with lock:
                        accepted.append(f"drain-{worker}-{n}")

        threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(accepted) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(accepted) >= 50, server.log()
        status = server.stop(signal.SIGTERM)
        for thread in threads:
            thread.join()
        assert status == 0, server.log()
    stored = {row["event_id"] for row in lake_rows(tmp_path / "data")}
    assert set(accepted) <= stored  # flushed at exit, without running `mailpulse flush`
    assert len(stored) == len({row["event_id"] for row in lake_rows(tmp_path / "data")})


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2) as server:
        for n in range(30):
            assert server.post(event(f"m-{n}")).status_code == 200
        text = requests.get(f"{server.base_url}/metrics", timeout=5).text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith('mailpulse_requests_total{outcome="stored",source="in_house"}')
        )
        assert float(line.split()[-1]) == 30.0
        assert mailpulse("flush", config=server.config_path).returncode == 0
        text = requests.get(f"{server.base_url}/metrics", timeout=5).text
        assert 'mailpulse_events_total{outcome="stored",source="in_house"} 30.0' in text
        assert "mailpulse_spool_pending_bytes 0.0" in text


def test_the_background_flusher_moves_events_while_serving(tmp_path: Path) -> None:
    """With no `mailpulse flush`, events reach the lake within a few flush intervals."""
    with running_server(tmp_path, flush_interval_seconds=0.3) as server:
        assert server.post([event("bg-1"), event("bg-2")]).status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if {r["event_id"] for r in lake_rows(tmp_path / "data")} == {"bg-1", "bg-2"}:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the background flusher did not run:\n{server.log()}")
        metrics = requests.get(f"{server.base_url}/metrics", timeout=5).text
        lag = next(
            line for line in metrics.splitlines() if line.startswith("mailpulse_flush_lag_seconds ")
        )
        assert float(lag.split()[1]) < 10
