"""``mailpulse actions list|retry|test``, run as the installed command against a real outbox.

The outbox is filled through :class:`~ingest.spool.sqlite_outbox.SqliteOutbox` the way the
tailer and the dispatcher fill it (enqueue, take, finish); ``test`` sends to a real HTTP
server on loopback, which checks the Standard Webhooks signature as a downstream would.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from ingest.actions.rules import webhook_id
from ingest.spool.outbox import STATES, NewAction, Outcome
from ingest.spool.sqlite_outbox import SqliteOutbox
from tests import leaks
from tests.helpers import mailpulse

T0 = 1_790_000_000.0  # when the rows were recorded (2026-09-21, UTC)
LONG_DETAIL = "401: " + "the token was refused by the CRM; " * 5 + "end-of-answer"


def new_whsec() -> str:
    """A fresh Standard Webhooks secret per test; remembered for the run's leak check."""
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    leaks.RECORD.secrets |= leaks.secret_forms(secret)
    return secret


@dataclass
class Received:
    """What the loopback server got: header names lower case."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 answering ``status`` and recording requests."""

    status: int = 200
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mailpulse"


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """A destination that records each request and answers ``loopback.status``."""
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.received.append(Received(headers, body))
            answer = b'{"accepted": true}' if state.status < 300 else b"upstream broke"
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: Any) -> None:
            """Quiet."""

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()


def write_config(directory: Path, url: str, secret: str) -> Path:
    """A mailpulse.toml with one webhook action ``crm`` (clicks by people) and a second one."""
    path = directory / "mailpulse.toml"
    path.write_text(
        f'data_dir = "{directory / "data"}"\n\n'
        "[actions.crm]\n"
        'do = "webhook"\n'
        f'url = "{url}"\n'
        f'secret = "{secret}"\n'
        'event_types = ["clicked"]\n'
        'agents = ["human"]\n'
        'campaigns = ["winter-sale"]\n\n'
        "[actions.alerts]\n"
        'do = "webhook"\n'
        'url = "http://127.0.0.1:9/unused"\n'
        f'secret = "{secret}"\n'
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose actions point nowhere (list and retry send nothing)."""
    return write_config(tmp_path, "http://127.0.0.1:9/unused", new_whsec())


def outbox_of(config: Path) -> SqliteOutbox:
    return SqliteOutbox(config.parent / "data" / "spool" / "spool.sqlite")


def record(outbox: SqliteOutbox, *event_ids: str, action: str = "crm") -> None:
    """Record one action per event id, as the tailer does."""
    outbox.enqueue(
        [
            NewAction(action, event_id, webhook_id(action, event_id), b'{"x": 1}', T0)
            for event_id in event_ids
        ],
        position=len(event_ids),
        now=T0,
    )


@pytest.fixture
def filled(config: Path) -> Path:
    """Four actions of ``crm``: 1 dead (a long 401), 2 failing (a 503, due later), 3
    delivered, 4 pending and never attempted."""
    outbox = outbox_of(config)
    record(outbox, "e1", "e2", "e3", "e4")
    taken = outbox.take_due({"crm": 3}, now=T0, lease_until=T0 + 70)
    assert [row.id for row in taken] == [1, 2, 3]
    outbox.finish(
        [
            Outcome(1, "dead", T0 + 1, 401, LONG_DETAIL),
            Outcome(2, "pending", T0 + 90, 503, "503: busy"),
            Outcome(3, "delivered", T0 + 1, 200, "200: ok"),
        ],
        now=T0 + 1,
    )
    outbox.close()
    return config


def listed(config: Path, *options: str) -> list[dict[str, Any]]:
    result = mailpulse("actions", "list", "--format", "json", *options, config=config)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = orjson.loads(result.stdout)
    return rows


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_list_shows_what_is_not_delivered_newest_first(filled: Path) -> None:
    rows = listed(filled)
    assert [(row["id"], row["state"], row["attempts"]) for row in rows] == [
        (4, "pending", 0),
        (2, "pending", 1),
        (1, "dead", 1),
    ]
    failing, dead = rows[1], rows[2]
    assert failing == {
        "id": 2,
        "action": "crm",
        "state": "pending",
        "attempts": 1,
        "event_id": "e2",
        "webhook_id": webhook_id("crm", "e2"),
        "created": iso(T0),
        "next_attempt": iso(T0 + 90),
        "last_status": 503,
        "last_detail": "503: busy",
    }
    assert dead["next_attempt"] is None and dead["last_status"] == 401
    assert dead["last_detail"] == LONG_DETAIL  # whole in JSON


def test_list_filters(filled: Path) -> None:
    assert [row["id"] for row in listed(filled, "--failed")] == [2]
    assert [row["id"] for row in listed(filled, "--dead")] == [1]
    assert [row["id"] for row in listed(filled, "--failed", "--dead")] == [2, 1]
    assert [row["id"] for row in listed(filled, "--all")] == [4, 3, 2, 1]
    assert [row["id"] for row in listed(filled, "--limit", "1")] == [4]


def test_failed_reads_past_rows_never_attempted(config: Path) -> None:
    """The newest pending rows are not failing: --failed still finds the older ones."""
    outbox = outbox_of(config)
    record(outbox, "old")
    outbox.take_due({"crm": 1}, now=T0, lease_until=T0 + 70)
    outbox.finish([Outcome(1, "pending", T0 + 5, None, "connection refused")], now=T0)
    record(outbox, *(f"new{i}" for i in range(30)))
    outbox.close()
    assert [row["id"] for row in listed(config, "--failed", "--limit", "5")] == [1]


def test_the_table_names_every_column_and_cuts_long_answers(filled: Path) -> None:
    result = mailpulse("actions", "list", "--dead", config=filled)
    assert result.returncode == 0, result.stderr
    for header in ("id", "action", "state", "attempts", "event_id", "webhook_id", "created"):
        assert header in result.stdout
    assert "next_attempt" in result.stdout and "last_detail" in result.stdout
    assert webhook_id("crm", "e1") in result.stdout  # ids whole, for copying
    assert iso(T0) in result.stdout  # times whole too
    assert "401: the token" in result.stdout and "end-of-answer" not in result.stdout


def test_nothing_to_list(config: Path) -> None:
    """No spool yet: said, and nothing created; an empty outbox: said too."""
    result = mailpulse("actions", "list", config=config)
    assert (result.returncode, result.stdout.strip()) == (0, "no actions recorded yet")
    assert not (config.parent / "data" / "spool").exists()
    assert listed(config) == []
    record(outbox := outbox_of(config))
    outbox.close()
    result = mailpulse("actions", "list", "--dead", config=config)
    assert (result.returncode, result.stdout.strip()) == (0, "no actions to show")


def test_retry_one_dead_action_makes_it_due_now(filled: Path) -> None:
    before = time.time()
    result = mailpulse("actions", "retry", "1", config=filled)
    assert result.returncode == 0, result.stderr
    assert "retried 1 dead-lettered action" in result.stdout
    outbox = outbox_of(filled)
    try:
        (row,) = [row for row in outbox.rows(STATES, 10) if row.id == 1]
        assert row.state == "pending" and before <= row.next_at <= time.time()
        assert outbox.rows(["dead"], 10) == []
        # What the dispatcher does next turn: the row is due now, with its webhook-id.
        taken = outbox.take_due({"crm": 10}, now=time.time(), lease_until=time.time() + 70)
        assert 1 in [row.id for row in taken]
    finally:
        outbox.close()


def test_retry_all_dead(config: Path) -> None:
    outbox = outbox_of(config)
    record(outbox, "a", "b", "c")
    outbox.take_due({"crm": 2}, now=T0, lease_until=T0 + 70)
    outbox.finish([Outcome(i, "dead", T0, 404, "404: gone") for i in (1, 2)], now=T0)
    outbox.close()
    result = mailpulse("actions", "retry", "--all-dead", config=config)
    assert result.returncode == 0, result.stderr
    assert "retried 2 dead-lettered actions" in result.stdout
    outbox = outbox_of(config)
    try:
        assert {row.id: row.state for row in outbox.rows(STATES, 10)} == {
            1: "pending",
            2: "pending",
            3: "pending",
        }
    finally:
        outbox.close()
    again = mailpulse("actions", "retry", "--all-dead", config=config)
    assert (again.returncode, again.stdout.strip()) == (0, "no dead-lettered actions to retry")


@pytest.mark.parametrize(
    ("ids", "line"),
    [
        (["3"], "mailpulse: action 3 is not dead-lettered (it is delivered)"),
        (["2"], "mailpulse: action 2 is not dead-lettered (it is pending)"),
        (["99"], "mailpulse: no action 99"),
        (["1", "99"], "mailpulse: no action 99"),
    ],
)
def test_retry_refuses_what_is_not_dead_and_retries_nothing(
    filled: Path, ids: list[str], line: str
) -> None:
    result = mailpulse("actions", "retry", *ids, config=filled)
    assert (result.returncode, result.stderr.strip()) == (1, line)
    outbox = outbox_of(filled)
    try:
        assert [row.id for row in outbox.rows(["dead"], 10)] == [1]  # still dead
    finally:
        outbox.close()


@pytest.mark.parametrize(
    "args",
    [
        ["actions", "retry"],
        ["actions", "retry", "1", "--all-dead"],
        ["actions", "retry", "x"],
        ["actions", "list", "--all", "--dead"],
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(filled: Path, args: list[str]) -> None:
    result = mailpulse(*args, config=filled)
    assert result.returncode == 2
    assert result.stderr.startswith("mailpulse: ") and "Traceback" not in result.stderr


def test_an_unreadable_outbox_is_one_line(config: Path) -> None:
    (config.parent / "data" / "spool" / "spool.sqlite").mkdir(parents=True)
    for args in (["list"], ["retry", "1"], ["retry", "--all-dead"]):
        result = mailpulse("actions", *args, config=config)
        assert result.returncode == 1, args
        assert result.stderr.startswith("mailpulse: ") and len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_test_sends_one_signed_event_that_matches_the_filter(
    tmp_path: Path, loopback: Loopback
) -> None:
    secret = new_whsec()
    config = write_config(tmp_path, loopback.url, secret)
    result = mailpulse("actions", "test", "crm", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok: 200 {"accepted": true}'
    (request,) = loopback.received
    payload = Webhook(secret).verify(request.body, request.headers)  # raises if not signed
    assert request.headers["webhook-id"].startswith("msg_test_")
    assert request.headers["webhook-id"] in result.stderr
    assert payload["type"] == "email.clicked" and payload["action"] == "crm"
    event = payload["data"]
    assert (event["event_type"], event["agent"], event["campaign"]) == (
        "clicked",
        "human",
        "winter-sale",
    )
    assert event["event_id"].startswith("mailpulse-test-")
    assert secret not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "spool").exists()  # straight out, not through the outbox


def test_test_says_when_the_destination_fails(tmp_path: Path, loopback: Loopback) -> None:
    loopback.status = 500
    config = write_config(tmp_path, loopback.url, new_whsec())
    result = mailpulse("actions", "test", "crm", config=config)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "failed: 500 upstream broke"
    assert len(loopback.received) == 1  # tried once, never retried


def test_test_with_no_answer(config: Path) -> None:
    result = mailpulse("actions", "test", "alerts", config=config)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "failed: no answer connection refused"


def test_test_of_an_unknown_action_names_the_configured_ones(config: Path) -> None:
    result = mailpulse("actions", "test", "crn", config=config)
    assert result.returncode == 2
    assert result.stderr.strip() == "mailpulse: no action 'crn'; configured: alerts, crm"
    (config.parent / "empty.toml").write_text(f'data_dir = "{config.parent / "data"}"\n')
    result = mailpulse("actions", "test", "crm", config=config.parent / "empty.toml")
    assert result.returncode == 2
    assert "none is configured" in result.stderr


@pytest.mark.parametrize("command", ["list", "retry", "test"])
def test_every_actions_command_has_help_with_an_example(command: str) -> None:
    result = mailpulse("actions", command, "--help")
    assert result.returncode == 0
    assert "Example:" in result.stdout and "--config" in result.stdout


def test_retrying_an_action_no_longer_configured_warns(config: Path) -> None:
    outbox = outbox_of(config)
    record(outbox, "z1", action="old-crm")
    outbox.take_due({"old-crm": 1}, now=T0, lease_until=T0 + 70)
    outbox.finish([Outcome(1, "dead", T0, 410, "410: gone")], now=T0)
    outbox.close()
    result = mailpulse("actions", "retry", "1", config=config)
    assert result.returncode == 0, result.stderr
    assert "1 pending actions of old-crm wait until [actions.old-crm]" in result.stderr
