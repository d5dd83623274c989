"""The dispatcher: due actions out of the outbox, to their destinations, and the outcome back.

One thread runs the loop; each action has its own lane (a thread pool of ``concurrency``
threads, a circuit breaker), so a destination that hangs or refuses holds its own threads
only and every other action keeps moving. The loop:

1. writes back the outcomes the lanes reported since the last turn (one transaction);
2. takes as many due rows of each action as its lane has room for (one transaction, which
   counts each attempt durably before its request leaves);
3. sleeps until woken (new actions, a finished delivery) or until the next row is due, then
   lets a few more wake-ups gather (``_GATHER_SECONDS``), so that under steady traffic a turn
   settles many deliveries at once instead of taking the spool's writers' turn for each.

After a crash, rows left ``sending`` are made due at once when the dispatcher starts again:
the attempt in flight is repeated, with the same ``webhook-id``; nothing else is.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ingest.actions.breaker import Breaker
from ingest.actions.destinations import build_destination
from ingest.actions.destinations.base import Answer, Delivery, Destination
from ingest.actions.retry import judge
from ingest.actions.stats import ActionStats, publish
from ingest.errors import SpoolUnavailable
from ingest.spool.outbox import Outbox, OutboxRow, Outcome
from mailpulse.actions_config import ActionConfig

log = logging.getLogger(__name__)

_LONGEST_SLEEP = 0.5  # the loop looks again at least this often (circuits reopen on time)
_PUBLISH_EVERY = 1.0  # seconds between status snapshots
_LEASE_MARGIN = 60.0  # a row taken stays ``sending`` this long past its timeout
_PRUNE_AFTER = 7 * 86_400  # delivered rows are kept a week for ``mailpulse actions list``
_PRUNE_EVERY = 3600.0
_QUEUED_PER_SLOT = 2
_GATHER_SECONDS = 0.02  # after a wake-up: well inside the latency budget, many fewer turns


@dataclass
class Lane:
    """One action's destination, threads and circuit."""

    action: ActionConfig
    destination: Destination
    pool: ThreadPoolExecutor
    breaker: Breaker
    in_flight: int = 0


@dataclass
class _Report:
    row: OutboxRow
    answer: Answer
    at: float
    lane: Lane = field(repr=False)


class Dispatcher:
    """Delivers the outbox's due actions until stopped."""

    def __init__(
        self,
        actions: Mapping[str, ActionConfig],
        outbox: Outbox,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        stats: ActionStats | None = None,
    ) -> None:
        self.outbox = outbox
        self.state_dir = state_dir
        self.clock = clock
        self.stats = stats or ActionStats()
        self._wake = threading.Event()
        self._reports: queue.SimpleQueue[_Report] = queue.SimpleQueue()
        self._lanes: dict[str, Lane] = {}
        self._retired: list[Lane] = []
        self._published = 0.0
        self._pruned = 0.0
        self._last_seen: object = None
        self.configure(actions)

    def configure(self, actions: Mapping[str, ActionConfig]) -> None:
        """Use ``actions`` from now on (a reload); lanes of changed actions are replaced once
        their deliveries in flight are back."""
        for name, lane in list(self._lanes.items()):
            if actions.get(name) != lane.action:
                self._retired.append(self._lanes.pop(name))
        for name, action in actions.items():
            if name not in self._lanes:
                self._lanes[name] = Lane(
                    action=action,
                    destination=build_destination(action),
                    pool=ThreadPoolExecutor(
                        action.concurrency, thread_name_prefix=f"action-{name}"
                    ),
                    breaker=Breaker(action.breaker_failures, action.breaker_seconds),
                )
        self._wake.set()

    def wake(self) -> None:
        """New actions are recorded: look now rather than at the next timeout."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, then wait for the deliveries in flight."""
        self.outbox.reset_in_flight(self.clock())
        while not stop.is_set():
            try:
                self.step()
            except SpoolUnavailable as error:  # the store is back soon; nothing is lost
                log.error("actions paused: %s", error)
                stop.wait(1.0)
            if self._wake.wait(self._sleep_for()):
                stop.wait(_GATHER_SECONDS)
            self._wake.clear()
        self.close()

    def step(self) -> int:
        """One turn of the loop; the number of deliveries started."""
        now = self.clock()
        self._collect_reports(now)
        free = {
            name: lane.breaker.allowed(now, lane.in_flight, _taken(lane))
            for name, lane in self._lanes.items()
        }
        longest = max((lane.action.timeout_seconds for lane in self._lanes.values()), default=0)
        rows = self.outbox.take_due(free, now, lease_until=now + longest + _LEASE_MARGIN)
        for row in rows:
            lane = self._lanes[row.action]
            lane.in_flight += 1
            lane.breaker.started(now)
            lane.pool.submit(self._send, lane, row)
        self._housekeeping(now)
        return len(rows)

    def close(self) -> None:
        """Wait for the deliveries in flight (each bounded by its timeout), record them."""
        for lane in [*self._lanes.values(), *self._retired]:
            lane.pool.shutdown(wait=True)
        self._collect_reports(self.clock())
        for lane in [*self._lanes.values(), *self._retired]:
            lane.destination.close()
        self._publish(self.clock())

    # -- the lanes' side

    def _send(self, lane: Lane, row: OutboxRow) -> None:
        delivery = Delivery(
            id=row.id,
            action=row.action,
            webhook_id=row.webhook_id,
            event=orjson.loads(row.event),
            attempt=row.attempts,
        )
        try:
            answer = lane.destination.send(delivery)
        except Exception as exc:  # a destination must not stop the lane; the row retries
            log.exception("action %s failed unexpectedly", row.action)
            answer = Answer(None, f"the destination failed unexpectedly ({type(exc).__name__})")
        self._reports.put(_Report(row=row, answer=answer, at=self.clock(), lane=lane))
        self._wake.set()

    # -- the loop's side

    def _collect_reports(self, now: float) -> None:
        outcomes: list[Outcome] = []
        while True:
            try:
                report = self._reports.get_nowait()
            except queue.Empty:
                break
            outcomes.append(self._judge(report))
        if outcomes:
            self.outbox.finish(outcomes, now)

    def _judge(self, report: _Report) -> Outcome:
        row, lane, answer = report.row, report.lane, report.answer
        lane.in_flight -= 1
        verdict = judge(
            lane.action, answer, attempt=row.attempts, created_at=row.created_at, now=report.at
        )
        lane.breaker.record(verdict.counts_as_failure, report.at)
        outcome = {"pending": "retried"}.get(verdict.state, verdict.state)
        latency = report.at - row.received_at if verdict.state == "delivered" else None
        self.stats.attempted(row.action, outcome, latency)
        if verdict.state == "dead":
            log.warning("action %s dead-lettered: %s", row.action, verdict.detail)
        return Outcome(row.id, verdict.state, verdict.next_at, answer.status, verdict.detail)

    def _sleep_for(self) -> float:
        """Until the next row of an action with room is due. A lane whose slots are all in
        flight (or whose circuit is open) takes nothing now however many rows are due: the
        loop waits to be woken by a delivery that ends, rather than turn in place."""
        now = self.clock()
        with_room = [
            name
            for name, lane in self._lanes.items()
            if lane.breaker.allowed(now, lane.in_flight, _taken(lane)) > 0
        ]
        try:
            due = self.outbox.next_due(with_room)
        except SpoolUnavailable:
            return _LONGEST_SLEEP
        if due is None:
            return _LONGEST_SLEEP
        return min(_LONGEST_SLEEP, max(0.0, due - self.clock()))

    def _housekeeping(self, now: float) -> None:
        self._retired = [lane for lane in self._retired if not self._drop_if_idle(lane)]
        if now - self._pruned >= _PRUNE_EVERY:
            self.outbox.prune(now - _PRUNE_AFTER)
            self._pruned = now
        if now - self._published >= _PUBLISH_EVERY:
            self._publish(now)

    def _drop_if_idle(self, lane: Lane) -> bool:
        if lane.in_flight:
            return False
        lane.pool.shutdown(wait=False)
        lane.destination.close()
        return True

    def _publish(self, now: float) -> None:
        try:
            summary = self.outbox.summary()
        except SpoolUnavailable:
            return
        kinds = {name: lane.action.do for name, lane in self._lanes.items()}
        circuits = {name: lane.breaker.state(now) for name, lane in self._lanes.items()}
        self._published = now
        seen = (summary, kinds, circuits)
        if seen == self._last_seen and not self.stats.changed:
            return  # nothing new: no write (an idle receiver leaves the disk alone)
        publish(self.state_dir, now, kinds, summary, circuits, self.stats)
        self._last_seen = seen


def _taken(lane: Lane) -> int:
    """How many rows a lane holds at once: its concurrency in flight, as many again queued
    behind them, so a thread that finishes starts the next delivery without waiting for the
    loop's next turn (and its two transactions)."""
    return lane.action.concurrency * _QUEUED_PER_SLOT
