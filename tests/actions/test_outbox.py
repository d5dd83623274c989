"""The outbox in the spool's database: recorded once, taken in turn, kept until it ends.

And the spool's side of it: records stay until both the flusher and the tailer are past them.
"""

from __future__ import annotations

from pathlib import Path

from ingest.spool.outbox import NewAction, Outcome
from ingest.spool.sqlite import SqliteSpool
from ingest.spool.sqlite_outbox import SqliteOutbox
from tests.helpers import in_house_request


def new(action: str, event_id: str, at: float = 1000.0) -> NewAction:
    return NewAction(action, event_id, f"msg_{action}_{event_id}", b'{"event_id": "x"}', at)


def spool_and_outbox(tmp_path: Path) -> tuple[SqliteSpool, SqliteOutbox]:
    path = tmp_path / "spool.sqlite"
    return SqliteSpool(path, max_bytes=10**9), SqliteOutbox(path)


def test_the_spool_keeps_records_until_the_tailer_is_past_them(tmp_path: Path) -> None:
    spool, outbox = spool_and_outbox(tmp_path)
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


def test_without_actions_the_spool_holds_nothing_for_them(tmp_path: Path) -> None:
    spool, outbox = spool_and_outbox(tmp_path)
    outbox.enqueue([], 0, 1000.0)  # a tailer that never got further
    spool.append(in_house_request(b"{}"))
    position = spool.claim(10**9, 10).position
    spool.acknowledge(position)
    assert spool.claim(10**9, 10).records != []  # held for the tailer

    outbox.release()  # no action configured any more
    spool.acknowledge(position)
    assert spool.claim(10**9, 10).records == []
    assert outbox.position() is None


def test_an_action_is_recorded_once_per_event_and_the_position_only_grows(tmp_path: Path) -> None:
    _, outbox = spool_and_outbox(tmp_path)
    assert outbox.position() is None
    assert outbox.enqueue([new("crm", "e1"), new("crm", "e2"), new("slack", "e1")], 10, 1.0) == 3
    # An ESP retry of e1 (and a tailer that matched the same records again) adds nothing.
    assert outbox.enqueue([new("crm", "e1"), new("crm", "e3")], 5, 2.0) == 1
    assert outbox.position() == 10
    counts = {name: s.pending for name, s in outbox.summary().items()}
    assert counts == {"crm": 3, "slack": 1}


def test_rows_are_taken_by_free_slots_and_due_time(tmp_path: Path) -> None:
    _, outbox = spool_and_outbox(tmp_path)
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
    assert (summary.sending, summary.delivered, summary.pending) == (4, 1, 0)
    assert outbox.summary()["slack"].pending == 1


def test_rows_left_sending_by_a_crash_are_due_again_at_start(tmp_path: Path) -> None:
    _, outbox = spool_and_outbox(tmp_path)
    outbox.enqueue([new("crm", "e1")], 1, 100.0)
    taken = outbox.take_due({"crm": 1}, now=100.0, lease_until=10_000.0)
    reopened = SqliteOutbox(tmp_path / "spool.sqlite")  # the next serve process

    assert reopened.reset_in_flight(now=105.0) == 1
    retaken = reopened.take_due({"crm": 1}, now=105.0, lease_until=200.0)
    assert [(r.id, r.webhook_id, r.attempts) for r in retaken] == [
        (taken[0].id, taken[0].webhook_id, 2)
    ]


def test_dead_rows_are_kept_listed_and_retried_on_request(tmp_path: Path) -> None:
    _, outbox = spool_and_outbox(tmp_path)
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


def test_delivered_rows_are_pruned_after_their_time(tmp_path: Path) -> None:
    _, outbox = spool_and_outbox(tmp_path)
    outbox.enqueue([new("crm", "e1"), new("crm", "e2")], 1, 100.0)
    rows = outbox.take_due({"crm": 2}, now=100.0, lease_until=200.0)
    outbox.finish([Outcome(rows[0].id, "delivered", 100.0, 200, "ok")], now=100.0)
    outbox.finish([Outcome(rows[1].id, "delivered", 500.0, 200, "ok")], now=500.0)
    assert outbox.prune(before=300.0) == 1
    assert [r.event_id for r in outbox.rows(["delivered"], 10)] == ["e2"]
