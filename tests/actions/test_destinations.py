"""Destinations against real HTTP servers on loopback: what they send, how answers come back.

Every server here is a ``ThreadingHTTPServer`` started by the test; it records each request
(method, path, headers, body) and answers what the test asks for. The suppression APIs of
the ESPs are in ``test_destination_suppress.py``.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ingest.actions.destinations import build_destination
from ingest.actions.destinations.base import Answer, Delivery
from ingest.actions.destinations.slack import SlackDestination
from ingest.actions.destinations.webhook import WebhookDestination
from ingest.actions.sample import sample_event
from mailpulse import __version__
from mailpulse.actions_config import ActionConfig
from mailpulse.lake import EVENTS_SCHEMA
from tests import leaks
from tests.helpers import parse_config


@dataclass
class Recorded:
    """One request as the server read it; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Reply:
    """What the server answers; ``delay`` seconds before answering (to outlast a timeout)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    echo: bool = False  # answer with the request's path and headers (a leaky server)


class Loopback(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that records requests and answers ``replies`` in turn."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = [Reply(200, b"ok")]
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        """The base URL, no trailing slash."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that gave up (a timeout test) leaves a broken pipe behind."""

    def answer(self, *replies: Reply) -> None:
        """Answer these replies in turn; the last one repeats."""
        self.replies = list(replies)

    def next_reply(self) -> Reply:
        """The reply for the next request."""
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


class _Handler(BaseHTTPRequestHandler):
    server: Loopback
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse shows

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        port = self.client_address[1]
        self.server.requests.append(Recorded(self.command, self.path, headers, body, port))
        reply = self.server.next_reply()
        if reply.delay and self.server.stopping.wait(reply.delay):
            return
        content = reply.body
        if reply.echo:
            content = orjson.dumps({"path": self.path, "headers": headers})
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_POST = do_PUT = do_GET = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on the recorded requests instead."""


@contextmanager
def running_loopback() -> Iterator[Loopback]:
    """A recording server on loopback, serving until the block ends."""
    loopback = Loopback()
    thread = threading.Thread(target=loopback.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield loopback
    finally:
        loopback.stopping.set()  # wakes handlers that were told to hang
        loopback.shutdown()
        loopback.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Loopback]:
    """A recording server on loopback, stopped after the test."""
    with running_loopback() as loopback:
        yield loopback


def new_key(prefix: str = "") -> str:
    """A fresh random credential, remembered so the run fails if any output shows it."""
    key = prefix + secrets.token_urlsafe(24)
    leaks.RECORD.secrets |= leaks.secret_forms(key)
    return key


def whsec() -> str:
    """A fresh Standard Webhooks secret."""
    key = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    leaks.RECORD.secrets |= leaks.secret_forms(key)
    return key


def make_action(do: str, **table: Any) -> ActionConfig:
    """One ``[actions.test]`` table, validated as a config file's would be."""
    config = parse_config({"actions": {"test": {"do": do, **table}}}, env={})
    return config.actions["test"]


def delivery(attempt: int = 1, webhook_id: str = "msg_1", **event: Any) -> Delivery:
    """A delivery of a clicked event (fields overridable)."""
    fields: dict[str, Any] = {
        "event_id": "ev-1",
        "source": "esp",
        "provider": "generic",
        "event_type": "clicked",
        "occurred_at": "2026-01-02T03:04:05+00:00",
        "recipient": "ada@example.com",
        "campaign": "spring",
        "tags": ["a", "b"],
        "agent": "human",
        **event,
    }
    return Delivery(id=7, action="test", webhook_id=webhook_id, event=fields, attempt=attempt)


# --- webhook -------------------------------------------------------------------------------


def test_webhook_posts_the_event_signed(server: Loopback) -> None:
    """The body is the documented envelope; a Standard Webhooks library verifies it."""
    key, token = whsec(), new_key()
    action = make_action(
        "webhook", url=f"{server.url}/hooks/crm?v=1", secret=key, headers={"X-Token": token}
    )
    destination = build_destination(action)
    assert isinstance(destination, WebhookDestination)
    sent = delivery()
    answer = destination.send(sent)
    destination.close()

    assert answer == Answer(200, "ok")
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/hooks/crm?v=1")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"mailpulse/{__version__}"
    assert request.headers["x-token"] == token
    assert request.headers["webhook-id"] == "msg_1"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
    payload = Webhook(key).verify(request.body, request.headers)
    assert payload == {
        "type": "email.clicked",
        "timestamp": "2026-01-02T03:04:05+00:00",
        "action": "test",
        "data": dict(sent.event),
    }
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(whsec()).verify(request.body, request.headers)


def test_every_attempt_of_a_delivery_carries_its_webhook_id(server: Loopback) -> None:
    """A retry is recognisable as the same message; it reuses the thread's connection."""
    key = whsec()
    destination = build_destination(make_action("webhook", url=server.url, secret=key))
    destination.send(delivery(attempt=1, webhook_id="msg_a"))
    destination.send(delivery(attempt=2, webhook_id="msg_a"))
    destination.send(delivery(attempt=1, webhook_id="msg_b"))
    destination.close()

    ids = [request.headers["webhook-id"] for request in server.requests]
    assert ids == ["msg_a", "msg_a", "msg_b"]
    for request in server.requests:
        Webhook(key).verify(request.body, request.headers)
    assert len({request.client_port for request in server.requests}) == 1


def test_concurrent_sends_each_arrive_once(server: Loopback) -> None:
    """Threads share a destination (each with its own session); every delivery arrives."""
    destination = build_destination(make_action("webhook", url=server.url, secret=whsec()))
    ids = [f"m{i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: destination.send(delivery(webhook_id=i)), ids))
    destination.close()
    assert [answer.status for answer in answers] == [200] * len(ids)
    assert sorted(r.headers["webhook-id"] for r in server.requests) == sorted(ids)


# --- slack ---------------------------------------------------------------------------------


def test_slack_posts_the_filled_template(server: Loopback) -> None:
    """Missing and None fields render empty, lists are joined, Slack's markup is escaped."""
    hook = f"/services/{new_key()}"
    template = "{event_type} by {recipient} [{campaign}] [{url}] [{reason}] {tags} {agent}"
    action = make_action("slack", url=server.url + hook, template=template)
    destination = build_destination(action)
    assert isinstance(destination, SlackDestination)
    event = delivery(campaign=None, agent="<!channel> & co").event
    answer = destination.send(Delivery(1, "test", "msg_1", {**event, "url": None}, 1))
    destination.close()

    assert answer == Answer(200, "ok")
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", hook)
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.body) == {
        "text": "clicked by ada@example.com [] [] [] a, b &lt;!channel&gt; &amp; co"
    }


def test_slack_default_template(server: Loopback) -> None:
    destination = build_destination(make_action("slack", url=f"{server.url}/x"))
    destination.send(delivery())
    destination.close()
    assert orjson.loads(server.requests[0].body) == {"text": "clicked: ada@example.com (spring)"}


def test_slack_template_that_cannot_be_filled_is_final(server: Loopback) -> None:
    destination = build_destination(
        make_action("slack", url=f"{server.url}/x", template="{recipient:d}")
    )
    answer = destination.send(delivery())
    destination.close()
    assert answer.status == 422
    assert server.requests == []


# --- sample events -------------------------------------------------------------------------


def test_sample_event_matches_every_filter() -> None:
    action = make_action(
        "webhook",
        url="https://crm.example.com/hook",
        secret=whsec(),
        event_types=["opened", "clicked"],
        sources=["esp_eu", "esp_us"],
        campaigns=["winter"],
        agents=["human"],
        recipient_domains=["Example.ORG", "example.net"],
    )
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    event = sample_event(action, now)

    assert set(event) == set(EVENTS_SCHEMA) - {"raw"}
    assert (event["event_type"], event["source"], event["campaign"]) == (
        "opened",
        "esp_eu",
        "winter",
    )
    assert event["agent"] == "human"
    assert event["recipient"] == "test-recipient@example.org"
    assert event["recipient_domain"] == "example.org"
    assert event["event_id"].startswith("mailpulse-test-")
    assert event["occurred_at"] == event["received_at"] == "2026-03-04T05:06:07+00:00"
    assert orjson.loads(orjson.dumps(event)) == event  # JSON-ready


def test_sample_event_for_a_bounce_filter() -> None:
    action = make_action(
        "suppress",
        provider="sendgrid",
        api_key=new_key(),
        event_types=["bounced"],
        bounce_classes=["soft"],
    )
    event = sample_event(action, datetime.now(UTC))
    assert (event["event_type"], event["bounce_class"], event["smtp_status"]) == (
        "bounced",
        "soft",
        "450",
    )
    assert event["recipient"] == "test-recipient@example.com"
    assert event["event_id"] != sample_event(action, datetime.now(UTC))["event_id"]
