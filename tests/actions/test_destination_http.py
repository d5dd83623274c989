"""The HTTP plumbing all HTTP destinations share: answers, Retry-After, failures, secrets.

Against real servers on loopback (:func:`tests.actions.test_destinations.running_loopback`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ingest.actions.destinations import build_destination
from ingest.actions.destinations.base import DETAIL_CHARS, Answer
from ingest.actions.destinations.http import parse_retry_after
from mailpulse.demo import free_port
from tests.actions.test_destinations import (
    Loopback,
    Reply,
    delivery,
    make_action,
    new_key,
    running_loopback,
    whsec,
)


@pytest.fixture
def server() -> Iterator[Loopback]:
    """A recording server on loopback, stopped after the test."""
    with running_loopback() as loopback:
        yield loopback


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("-5", 0.0), ("1.5", 1.5)]
)
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0  # past: now


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "Wed, 99 Foo 2015"])
def test_retry_after_that_is_neither_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


# --- answers and failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(500, b"upstream broke"), Answer(500, "upstream broke")),
        (Reply(429, b"slow down", {"Retry-After": "30"}), Answer(429, "slow down", 30.0)),
        (Reply(400, b"invalid_payload"), Answer(400, "invalid_payload")),
        (Reply(503, b"", {"Retry-After": "soon"}), Answer(503, "")),
        (Reply(204), Answer(204, "")),
    ],
)
def test_status_body_and_retry_after_pass_through(
    server: Loopback, reply: Reply, expected: Answer
) -> None:
    server.answer(reply)
    destination = build_destination(make_action("webhook", url=server.url, secret=whsec()))
    assert destination.send(delivery()) == expected
    destination.close()


def test_detail_keeps_the_start_of_a_long_body(server: Loopback) -> None:
    server.answer(Reply(502, b"x" * 100_000))
    destination = build_destination(make_action("webhook", url=server.url, secret=whsec()))
    assert destination.send(delivery()) == Answer(502, "x" * DETAIL_CHARS)
    destination.close()


def test_a_server_that_hangs_past_the_timeout(server: Loopback) -> None:
    server.answer(Reply(200, b"late", delay=5))
    action = make_action("webhook", url=server.url, secret=whsec(), timeout_seconds=0.5)
    destination = build_destination(action)
    started = time.monotonic()
    answer = destination.send(delivery())
    destination.close()
    assert time.monotonic() - started < 3
    assert answer == Answer(None, "no answer: reading timed out after 0.5 s")


def test_a_closed_port_is_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook/{new_key()}"
    slack = build_destination(make_action("slack", url=url))
    answer = slack.send(delivery())
    slack.close()
    assert answer == Answer(None, "connection refused")


def test_a_host_that_does_not_resolve() -> None:
    destination = build_destination(
        make_action("webhook", url="http://mailpulse-test.invalid/", secret=whsec())
    )
    answer = destination.send(delivery())
    destination.close()
    assert answer.status is None
    assert answer.detail in ("the host name did not resolve", "connection refused")


def test_secrets_never_reach_the_detail(server: Loopback) -> None:
    """A server that echoes the request path and headers back: the detail hides the secrets."""
    server.answer(Reply(400, echo=True))
    token, path = new_key(), new_key()
    webhook = build_destination(
        make_action("webhook", url=server.url, secret=whsec(), headers={"Authorization": token})
    )
    slack = build_destination(make_action("slack", url=f"{server.url}/services/{path}"))
    answers = [webhook.send(delivery()), slack.send(delivery())]
    webhook.close()
    slack.close()

    assert server.requests[0].headers["authorization"] == token
    assert server.requests[1].path == f"/services/{path}"
    for answer in answers:
        assert answer.status == 400
        assert "***" in answer.detail
        assert token not in answer.detail
        assert path not in answer.detail
