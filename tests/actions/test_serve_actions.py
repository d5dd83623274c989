"""Actions in the real ``mailpulse serve`` (gunicorn on loopback), against real destinations.

Events are posted signed over HTTP; the destinations are HTTP servers started here. The
crash test kills the whole server group with ``kill -9`` at random moments while deliveries
are in flight: every matching event acknowledged by the receiver is delivered at least once,
every repeat carries the same ``webhook-id``, and none is lost.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.actions.loopback import Destination, Reply, destination
from tests.helpers import event, mailpulse, new_secret, signed_headers, start_server, write_config

pytestmark = pytest.mark.slow

DELIVERED_TWICE = 'mailpulse_actions_total{action="crm",outcome="delivered"} 2.0'
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def action_table(name: str, url: str, secret: str, **settings: object) -> str:
    lines = [
        f"[actions.{name}]",
        'do = "webhook"',
        f'url = "{url}"',
        f'secret = "{secret}"',
        'event_types = ["clicked"]',
        'agents = ["human"]',
        "first_retry_seconds = 0.2",
        "max_retry_seconds = 1.0",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def click(event_id: str) -> dict[str, object]:
    return event(event_id, "clicked", user_agent=CHROME, url="https://shop.test/p")


def delivered_ids(server: Destination) -> dict[str, set[str]]:
    """Event id -> the webhook-ids it was delivered with."""
    seen: dict[str, set[str]] = defaultdict(set)
    for request in list(server.received):
        seen[request.json()["data"]["event_id"]].add(request.headers["webhook-id"])
    return seen


def test_matching_events_reach_the_destination_signed(tmp_path: Path) -> None:
    key = whsec()
    with destination() as crm:
        source_secret = new_secret()
        config = write_config(
            tmp_path,
            source_secret,
            "\n" + action_table("crm", crm.url, key),
            flush_interval_seconds=0.5,
        )
        server = start_server(config, tmp_path, source_secret)
        try:
            body = [click("c1"), event("d1"), click("c2"), event("o1", "opened", user_agent=CHROME)]
            assert server.post(body).status_code == 200
            assert server.post([click("c1")]).status_code == 200  # the ESP retries c1
            assert crm.wait_until(lambda got: len(got) >= 2, timeout=15)
            time.sleep(1.0)  # a repeat would arrive by now
            # The dispatcher publishes its counts once a second: the scrape may need another.
            deadline = time.monotonic() + 10
            while True:
                metrics = requests.get(f"{server.base_url}/metrics", timeout=10).text
                if DELIVERED_TWICE in metrics or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            assert server.stop() == 0
    for request in crm.received:
        payload = Webhook(key).verify(request.body, request.headers)
        assert payload["type"] == "email.clicked"
    assert sorted(delivered_ids(crm)) == ["c1", "c2"]
    assert len(crm.received) == 2
    assert DELIVERED_TWICE in metrics
    # The flusher still stores everything once, with the spool kept for the actions too.
    result = mailpulse("report", "--format", "json", config=config)
    assert result.returncode == 0, result.stderr
    listed = mailpulse("actions", "list", "--all", "--format", "json", config=config)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((row["event_id"], row["state"]) for row in rows) == [
        ("c1", "delivered"),
        ("c2", "delivered"),
    ]


def test_kill_9_while_actions_are_in_flight_loses_none(tmp_path: Path) -> None:
    source_secret = new_secret()
    rng = random.Random(20261206)
    acknowledged: set[str] = set()
    lock = threading.Lock()
    counter = iter(range(10**9))
    # Each answer takes a little while, so deliveries are in flight when the kill lands.
    with destination(lambda request: Reply(200, delay=rng.uniform(0.0, 0.05))) as crm:
        config = write_config(
            tmp_path,
            source_secret,
            "\n" + action_table("crm", crm.url, whsec(), concurrency=4),
            flush_interval_seconds=0.3,
        )
        for round_number in range(6):
            server = start_server(config, tmp_path, source_secret)
            stop = threading.Event()

            def send(
                worker: int,
                url: str = server.base_url,
                stop: threading.Event = stop,
                round_number: int = round_number,
            ) -> None:
                session = requests.Session()
                while not stop.is_set():
                    with lock:
                        n = next(counter)
                    ids = [f"k{round_number}-{worker}-{n}-{k}" for k in range(4)]
                    # One click in four events: the rest must not be acted on.
                    body = json.dumps([click(ids[0]), *(event(i) for i in ids[1:])]).encode()
                    try:
                        answer = session.post(
                            f"{url}/webhooks/in_house",
                            data=body,
                            headers=signed_headers(source_secret, body),
                            timeout=5,
                        )
                    except requests.RequestException:
                        return
                    if answer.status_code == 200:
                        with lock:
                            acknowledged.add(ids[0])

            senders = [threading.Thread(target=send, args=(w,)) for w in range(4)]
            for thread in senders:
                thread.start()
            time.sleep(rng.uniform(0.5, 2.5))
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)
            stop.set()
            for thread in senders:
                thread.join(timeout=30)

        assert len(acknowledged) > 100, "the load never got going"
        server = start_server(config, tmp_path, source_secret)
        try:
            done = crm.wait_until(lambda _: acknowledged <= set(delivered_ids(crm)), timeout=90)
        finally:
            server.stop()
        seen = delivered_ids(crm)

    missing = acknowledged - set(seen)
    assert done and not missing, f"{len(missing)} acknowledged clicks never delivered"
    assert all(len(ids) == 1 for ids in seen.values()), "a repeat carried another webhook-id"
    assert all(event_id.split("-")[3] == "0" for event_id in seen), "a non-click was acted on"


def test_a_rate_limited_receiver_and_a_slow_destination_do_not_slow_each_other(
    tmp_path: Path,
) -> None:
    source_secret = new_secret()
    with destination([Reply(200, delay=1.5)]) as slow, destination() as fast:
        config = write_config(
            tmp_path,
            source_secret,
            'rate_limit = "20/second"\n\n'
            + action_table("slow", slow.url, whsec(), concurrency=2, timeout_seconds=5)
            + action_table("fast", fast.url, whsec()),
            flush_interval_seconds=0.5,
        )
        server = start_server(config, tmp_path, source_secret)
        try:
            answers: list[int] = []
            for n in range(120):
                body = json.dumps([click(f"c{n}")]).encode()
                # A receiver waiting on the slow destination would miss this timeout.
                answer = requests.post(
                    f"{server.base_url}/webhooks/in_house",
                    data=body,
                    headers=signed_headers(source_secret, body),
                    timeout=1.0,
                )
                answers.append(answer.status_code)
            stored = answers.count(200)
            assert set(answers) <= {200, 429} and answers.count(429) > 0 and stored > 0
            # The limit turned some requests away; what was stored reaches the fast
            # destination at once, whatever the slow one is doing.
            assert fast.wait_until(lambda got: len(got) == stored, timeout=10)
            assert len(slow.received) < stored  # still working through its share
        finally:
            server.stop(signal.SIGKILL)


def test_sighup_applies_new_actions_without_a_restart(tmp_path: Path) -> None:
    source_secret = new_secret()
    with destination() as crm, destination() as ops:
        config = write_config(tmp_path, source_secret, "\n" + action_table("crm", crm.url, whsec()))
        server = start_server(config, tmp_path, source_secret)
        try:
            assert server.post([click("before")]).status_code == 200
            assert crm.wait_until(lambda got: len(got) == 1, timeout=15)
            config.write_text(config.read_text() + "\n" + action_table("ops", ops.url, whsec()))
            os.kill(server.process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 30
            n = 0
            while not ops.received and time.monotonic() < deadline:
                n += 1
                assert server.post([click(f"after-{n}")]).status_code == 200
                ops.wait_until(lambda got: bool(got), timeout=1)
        finally:
            assert server.stop() == 0
    assert ops.received, "the action added by the reload never ran"
    assert ops.received[0].json()["data"]["event_id"].startswith("after-")
    assert {r.json()["data"]["event_id"] for r in crm.received} >= {"before"}
