"""The outbox in the spool's database: recorded once, taken in turn, kept until it ends.

And the spool's side of it: records stay until both the flusher and the tailer are past them.
Every test runs on both engines: the embedded file, and the PostgreSQL database several
receivers share.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest.errors import SpoolUnavailable
from ingest.spool.outbox import NewAction, Outbox, Outcome
from ingest.spool.postgres import PostgresSpool
from ingest.spool.postgres_outbox import PostgresOutbox
from ingest.spool.queue import Spool
from ingest.spool.sqlite import SqliteSpool
from ingest.spool.sqlite_outbox import SqliteOutbox
from mailpulse.demo import free_port
from tests.helpers import in_house_request


def new(action: str, event_id: str, at: float = 1000.0) -> NewAction:
    return NewAction(action, event_id, f"msg_{action}_{event_id}", b'{"event_id": "x"}', at)


@dataclass
class Store:
    """A spool and its outbox on one engine, and how the next process opens the outbox."""

    spool: Spool
    outbox: Outbox
    open_outbox: Callable[[], Outbox]
    opened: list[Outbox] = field(default_factory=list)

    def reopen(self) -> Outbox:
        """The outbox as the next serve process sees it: new connections, same store."""
        outbox = self.open_outbox()
        self.opened.append(outbox)
        return outbox


@pytest.fixture(params=["local", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each engine in turn: "local" shares the spool's SQLite file, "postgres" its database."""
    opener: Callable[[], Outbox]
    if request.param == "local":
        path = tmp_path / "spool.sqlite"
        spool: Spool = SqliteSpool(path, max_bytes=10**9)
        opener = functools.partial(SqliteOutbox, path)
    else:
        url = request.getfixturevalue("pg_url")
        spool = PostgresSpool(url, max_bytes=10**9)
        opener = functools.partial(PostgresOutbox, url)
    opened = Store(spool, opener(), opener)
    yield opened
    for outbox in [opened.outbox, *opened.opened]:
        outbox.close()
    spool.close()


def test_the_spool_keeps_records_until_the_tailer_is_past_them(store: Store) -> None:
    spool, outbox = store.spool, store.outbox
    for n in range(4):
        spool.append(in_house_request(b'{"n": %d}' % n))
    claim = spool.claim(10**9, 100)
    positions = [claim.position]  # the flusher's position: all four
    first_two = spool.claim(10**9, 2)
    outbox.enqueue([], first_two.position, 1000.0)  # the tailer matched two of them

    spool.acknowledge(positions[0])

    left = spool.claim(10**9, 100)
    assert [r.body for r in left.records] == [b'{"n": 2}', b'{"n": 3}']
    outbox.enqueue([], claim.position, 1001.0)
    spool.acknowledge(positions[0])
    assert spool.claim(10**9, 100).records == []
    assert spool.pending_bytes() == 0


def test_without_actions_the_spool_holds_nothing_for_them(store: Store) -> None:
    spool, outbox = store.spool, store.outbox
    outbox.enqueue([], 0, 1000.0)  # a tailer that never got further
    spool.append(in_house_request(b"{}"))
    position = spool.claim(10**9, 10).position
    spool.acknowledge(position)
    assert spool.claim(10**9, 10).records != []  # held for the tailer

    outbox.release()  # no action configured any more
    spool.acknowledge(position)
    assert spool.claim(10**9, 10).records == []
    assert outbox.position() is None


def test_an_action_is_recorded_once_per_event_and_the_position_only_grows(store: Store) -> None:
    outbox = store.outbox
    assert outbox.position() is None
    assert outbox.enqueue([new("crm", "e1"), new("crm", "e2"), new("slack", "e1")], 10, 1.0) == 3
    # An ESP retry of e1 (and a tailer that matched the same records again) adds nothing.
    assert outbox.enqueue([new("crm", "e1"), new("crm", "e3")], 5, 2.0) == 1
    assert outbox.position() == 10
    counts = {name: s.pending for name, s in outbox.summary().items()}
    assert counts == {"crm": 3, "slack": 1}


def test_rows_are_taken_by_free_slots_and_due_time(store: Store) -> None:
    outbox = store.outbox
    outbox.enqueue([new("crm", f"e{n}") for n in range(5)] + [new("slack", "s1")], 1, 100.0)

    taken = outbox.take_due({"crm": 2, "slack": 0}, now=100.0, lease_until=200.0)
    assert [row.event_id for row in taken] == ["e0", "e1"]
    assert all(row.state == "sending" and row.attempts == 1 for row in taken)
    assert outbox.take_due({"crm": 5}, now=99.0, lease_until=200.0) == []  # not due yet

    outbox.finish(
        [
            Outcome(taken[0].id, "delivered", 101.0, 200, "ok"),
            Outcome(taken[1].id, "pending", 130.0, 503, "503: busy"),
        ],
        now=101.0,
    )
    again = outbox.take_due({"crm": 10}, now=120.0, lease_until=200.0)
    assert [row.event_id for row in again] == ["e2", "e3", "e4"]  # e1 is due at 130 only
    later = outbox.take_due({"crm": 10}, now=131.0, lease_until=200.0)
    assert [(row.event_id, row.attempts) for row in later] == [("e1", 2)]
    summary = outbox.summary()["crm"]
    assert (summary.sending, summary.pending, summary.failing) == (4, 0, 0)
    assert [r.event_id for r in outbox.rows(["delivered"], 10)] == ["e0"]
    assert outbox.summary()["slack"].pending == 1


def test_rows_left_sending_by_a_crash_are_due_again_at_start(store: Store) -> None:
    outbox = store.outbox
    outbox.enqueue([new("crm", "e1")], 1, 100.0)
    taken = outbox.take_due({"crm": 1}, now=100.0, lease_until=10_000.0)
    reopened = store.reopen()  # the next serve process

    assert reopened.reset_in_flight(now=105.0) == 1
    retaken = reopened.take_due({"crm": 1}, now=105.0, lease_until=200.0)
    assert [(r.id, r.webhook_id, r.attempts) for r in retaken] == [
        (taken[0].id, taken[0].webhook_id, 2)
    ]


def test_dead_rows_are_kept_listed_and_retried_on_request(store: Store) -> None:
    outbox = store.outbox
    outbox.enqueue([new("crm", "e1"), new("crm", "e2"), new("crm", "e3")], 1, 100.0)
    rows = outbox.take_due({"crm": 3}, now=100.0, lease_until=200.0)
    outbox.finish([Outcome(r.id, "dead", 100.0, 400, "400: bad address") for r in rows], 100.0)

    dead = outbox.rows(["dead"], limit=10)
    assert [r.event_id for r in dead] == ["e3", "e2", "e1"]  # newest first
    assert dead[0].last_status == 400 and dead[0].last_detail == "400: bad address"
    assert outbox.prune(before=10**10) == 0  # dead letters are never pruned

    assert outbox.retry([rows[0].id], now=300.0) == 1
    assert outbox.retry([rows[0].id], now=300.0) == 0  # not dead any more
    assert [r.event_id for r in outbox.take_due({"crm": 5}, 300.0, 400.0)] == ["e1"]
    assert outbox.retry(None, now=500.0) == 2
    assert outbox.summary()["crm"].pending == 2


def test_delivered_rows_are_pruned_after_their_time(store: Store) -> None:
    outbox = store.outbox
    outbox.enqueue([new("crm", "e1"), new("crm", "e2")], 1, 100.0)
    rows = outbox.take_due({"crm": 2}, now=100.0, lease_until=200.0)
    outbox.finish([Outcome(rows[0].id, "delivered", 100.0, 200, "ok")], now=100.0)
    outbox.finish([Outcome(rows[1].id, "delivered", 500.0, 200, "ok")], now=500.0)
    assert outbox.prune(before=300.0) == 1
    assert [r.event_id for r in outbox.rows(["delivered"], 10)] == ["e2"]


def test_two_hosts_taking_due_rows_at_once_never_take_the_same_row(pg_url: str) -> None:
    hosts = [PostgresOutbox(pg_url), PostgresOutbox(pg_url)]  # two receivers' dispatchers
    hosts[0].enqueue([new("crm", f"e{n}") for n in range(400)], 1, 100.0)
    taken: list[list[int]] = [[], [], [], []]
    start = threading.Barrier(len(taken))

    def dispatch(thread: int) -> None:
        host = hosts[thread % 2]  # two threads per host, as the dispatcher's batches overlap
        start.wait(timeout=30)
        # A host that finds nothing is done: rows another host holds locked it skips, and
        # that host takes them itself before it finds nothing in turn.
        while rows := host.take_due({"crm": 3}, now=100.0, lease_until=200.0):
            taken[thread].extend(row.id for row in rows)

    threads = [threading.Thread(target=dispatch, args=(n,)) for n in range(len(taken))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        everything = [row_id for ids in taken for row_id in ids]
        assert len(everything) == len(set(everything)) == 400  # each row exactly once
        assert taken[0] + taken[2] and taken[1] + taken[3]  # both hosts really took rows
        sending = hosts[1].rows(["sending"], limit=1000)
        assert len(sending) == 400 and {row.attempts for row in sending} == {1}
    finally:
        for host in hosts:
            host.close()


def test_an_unreachable_database_is_unavailable_and_the_url_is_never_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = PostgresOutbox(f"postgresql://mp:hunter2-secret@127.0.0.1:{free_port()}/x")
    with caplog.at_level(logging.ERROR), pytest.raises(SpoolUnavailable) as raised:
        outbox.enqueue([new("crm", "e1")], 1, 100.0)
    assert raised.value.retry_after == 30
    assert "cannot be reached" in str(raised.value)
    told = [str(raised.value), caplog.text, *(str(vars(r)) for r in caplog.records)]
    assert caplog.records and not any("hunter2" in text for text in told)
