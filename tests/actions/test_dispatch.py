"""The dispatcher against real HTTP destinations on loopback, and each way they fail.

Rows go through the real outbox (SQLite in a temporary spool); the dispatcher runs in its own
thread as it does in ``serve``. Backoffs are configured in fractions of a second so a test
sees several attempts; the policy is the same at any scale.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from ingest.actions.dispatcher import Dispatcher
from ingest.actions.rules import webhook_id
from ingest.actions.sample import sample_event
from ingest.spool.outbox import NewAction, Outbox, OutboxRow, open_outbox
from mailpulse import lake
from mailpulse.config import Config
from mailpulse.demo import free_port
from tests.actions.loopback import Received, Reply, destination
from tests.helpers import parse_config

FAST = {"first_retry_seconds": 0.05, "max_retry_seconds": 0.2, "timeout_seconds": 2}


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def webhook(url: str, secret: str, **settings: Any) -> dict[str, Any]:
    return {"do": "webhook", "url": url, "secret": secret, **FAST, **settings}


@contextmanager
def dispatching(tmp_path: Path, actions: dict[str, Any]) -> Iterator[tuple[Config, Outbox]]:
    """The dispatcher of ``actions`` running over a fresh outbox."""
    config = parse_config({"data_dir": str(tmp_path / "data"), "actions": actions})
    outbox = open_outbox(config)
    dispatcher = Dispatcher(config.actions, outbox, config.state_dir)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield config, outbox
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def record(config: Config, outbox: Outbox, action: str, count: int = 1) -> list[str]:
    """Record ``count`` actions as the tailer would; their event ids."""
    ids = []
    for _ in range(count):
        event = sample_event(config.actions[action], datetime.now(UTC))
        ids.append(event["event_id"])
        outbox.enqueue(
            [
                NewAction(
                    action,
                    event["event_id"],
                    webhook_id(action, event["event_id"]),
                    orjson.dumps(event),
                    time.time(),
                )
            ],
            position=0,
            now=time.time(),
        )
    return ids


def final_row(outbox: Outbox, timeout: float = 20) -> OutboxRow:
    """The one row, once it is delivered or dead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = outbox.rows(["delivered", "dead"], 10)
        if rows:
            return rows[0]
        time.sleep(0.02)
    raise AssertionError(f"never finished: {outbox.rows(['pending', 'sending'], 10)}")


def test_a_500_is_retried_with_the_same_id_and_a_valid_signature(tmp_path: Path) -> None:
    secret = whsec()
    with (
        destination([Reply(500, b"down"), Reply(502), Reply(200)]) as crm,
        dispatching(tmp_path, {"crm": webhook(crm.url, secret)}) as (config, outbox),
    ):
        (event_id,) = record(config, outbox, "crm")
        row = final_row(outbox)

    assert (row.state, row.attempts, row.last_status) == ("delivered", 3, 200)
    assert len(crm.received) == 3
    assert {r.headers["webhook-id"] for r in crm.received} == {webhook_id("crm", event_id)}
    for request in crm.received:  # a downstream verifies with the spec's own library
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["data"]["event_id"] == event_id
        assert payload["type"] == "email.bounced"


def test_429_waits_at_least_its_retry_after(tmp_path: Path) -> None:
    with (
        destination([Reply(429, headers={"Retry-After": "2"}), Reply(200)]) as crm,
        dispatching(tmp_path, {"crm": webhook(crm.url, whsec())}) as (config, outbox),
    ):
        record(config, outbox, "crm")
        row = final_row(outbox)

    first, second = crm.received
    assert row.state == "delivered"
    assert second.at - first.at >= 1.9  # the backoff alone would have waited 0.05 s at most


def test_a_hanging_destination_times_out_and_is_tried_again(tmp_path: Path) -> None:
    with destination([Reply(200, delay=3), Reply(200)]) as crm:
        action = webhook(crm.url, whsec(), timeout_seconds=0.5)
        with dispatching(tmp_path, {"crm": action}) as (config, outbox):
            record(config, outbox, "crm")
            row = final_row(outbox)

    assert (row.state, row.attempts) == ("delivered", 2)
    assert len(crm.received) == 2
    assert crm.received[0].headers["webhook-id"] == crm.received[1].headers["webhook-id"]


def test_refused_connections_are_retried_until_the_destination_is_back(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: connections are refused
    url = f"http://127.0.0.1:{port}"
    with dispatching(tmp_path, {"crm": webhook(url, whsec(), breaker_failures=1000)}) as (
        config,
        outbox,
    ):
        record(config, outbox, "crm")
        deadline = time.monotonic() + 20
        # Refused at least twice (the row is pending or, between, being sent again).
        while (failing := outbox.rows(["pending", "sending"], 1)[0]).attempts < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert failing.last_status is None and "refused" in (failing.last_detail or "")
        with destination(port=port) as crm:
            row = final_row(outbox)
            assert row.state == "delivered"
            assert len(crm.received) == 1


def test_a_permanent_400_is_dead_lettered_with_the_answer(tmp_path: Path) -> None:
    with (
        destination([Reply(400, b'{"error": "unknown contact"}')]) as crm,
        dispatching(tmp_path, {"crm": webhook(crm.url, whsec())}) as (config, outbox),
    ):
        record(config, outbox, "crm")
        row = final_row(outbox)
    status = lake.read_status(config.state_dir, lake.ACTIONS_STATUS_FILE)  # written at stop

    assert (row.state, row.attempts, row.last_status) == ("dead", 1, 400)
    assert "unknown contact" in (row.last_detail or "")
    assert len(crm.received) == 1
    assert status["outcomes"]["crm"]["dead"] == 1


@pytest.mark.parametrize("status", [408, 409, 425, 503])
def test_answers_that_mean_not_now_are_retried(tmp_path: Path, status: int) -> None:
    with (
        destination([Reply(status), Reply(200)]) as crm,
        dispatching(tmp_path, {"crm": webhook(crm.url, whsec())}) as (config, outbox),
    ):
        record(config, outbox, "crm")
        row = final_row(outbox)
    assert (row.state, row.attempts) == ("delivered", 2)


def test_past_the_give_up_horizon_an_action_is_dead_lettered_never_dropped(
    tmp_path: Path,
) -> None:
    with destination([Reply(503, b"maintenance")]) as crm:
        action = webhook(crm.url, whsec(), give_up_after_hours=1.5 / 3600, breaker_failures=1000)
        with dispatching(tmp_path, {"crm": action}) as (config, outbox):
            record(config, outbox, "crm")
            row = final_row(outbox)

    assert row.state == "dead"
    assert row.last_detail is not None and row.last_detail.startswith("gave up after")
    assert "maintenance" in row.last_detail
    assert row.attempts == len(crm.received) >= 2


def test_a_dead_destination_does_not_delay_another(tmp_path: Path) -> None:
    dead_port = free_port()
    with destination() as slack_like:
        actions = {
            "crm": webhook(f"http://127.0.0.1:{dead_port}", whsec(), breaker_failures=3),
            "ops": webhook(slack_like.url, whsec()),
        }
        with dispatching(tmp_path, actions) as (config, outbox):
            record(config, outbox, "crm", count=50)
            time.sleep(0.5)  # the dead destination fails and its circuit opens
            sent = time.time()
            ops_ids = record(config, outbox, "ops", count=20)
            assert slack_like.wait_until(lambda got: len(got) == 20, timeout=10)
            waited = max(r.at for r in slack_like.received) - sent
            crm_rows = [r for r in outbox.rows(["pending", "sending"], 200) if r.action == "crm"]
            status_circuit = None
            deadline = time.monotonic() + 5
            while status_circuit != "open" and time.monotonic() < deadline:
                time.sleep(0.1)
                status = lake.read_status(config.state_dir, lake.ACTIONS_STATUS_FILE)
                status_circuit = status.get("actions", {}).get("crm", {}).get("circuit")

    assert waited < 2.0, f"the live destination waited {waited:.2f} s behind the dead one"
    delivered = {r.json()["data"]["event_id"] for r in slack_like.received}
    assert delivered == set(ops_ids)
    # The open circuit spared the dead destination: most of its 50 were never attempted.
    assert len(crm_rows) == 50
    assert sum(row.attempts for row in crm_rows) < 20
    assert status_circuit == "open"


def test_a_crash_in_flight_repeats_only_that_attempt_with_the_same_id(tmp_path: Path) -> None:
    secret = whsec()
    got: list[Received] = []
    with destination(lambda r: Reply(200)) as crm:
        config = parse_config(
            {"data_dir": str(tmp_path / "data"), "actions": {"crm": webhook(crm.url, secret)}}
        )
        outbox = open_outbox(config)
        record(config, outbox, "crm", count=3)
        # A dispatcher took two rows and died before it wrote back what happened.
        taken = outbox.take_due({"crm": 2}, now=time.time(), lease_until=time.time() + 3600)
        assert len(taken) == 2
        with dispatching(tmp_path, {"crm": webhook(crm.url, secret)}) as (_, fresh):
            assert crm.wait_until(lambda r: len(r) == 3, timeout=10)
            time.sleep(0.3)
            rows = fresh.rows(["delivered"], 10)
        got = list(crm.received)
    assert len(got) == 3  # each once: the two in flight repeated, the third sent once
    assert {r.headers["webhook-id"] for r in got} == {row.webhook_id for row in rows}
    assert {row.id: row.attempts for row in rows} == {
        **{row.id: 2 for row in taken},
        **{row.id: 1 for row in rows if row.id not in {t.id for t in taken}},
    }


def test_an_action_never_has_more_deliveries_in_flight_than_its_concurrency(
    tmp_path: Path,
) -> None:
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow(_: Received) -> Reply:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.3)
        with lock:
            in_flight -= 1
        return Reply(200)

    with (
        destination(slow) as crm,
        dispatching(tmp_path, {"crm": webhook(crm.url, whsec(), concurrency=2)}) as (c, outbox),
    ):
        record(c, outbox, "crm", count=6)
        assert crm.wait_until(lambda got: len(got) == 6, timeout=15)
    assert most == 2
