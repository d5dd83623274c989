"""What the dispatcher counts, and the status snapshot it publishes for ``/metrics`` and the
dashboard (``state/actions.json``, :data:`mailpulse.lake.ACTIONS_STATUS_FILE`).

The dispatcher runs in the ``serve`` process, not in a gunicorn worker, so its numbers reach
a scrape the way the flusher's do: through a snapshot on disk, read at scrape time by
whichever worker answers. Counters start from zero when ``serve`` starts, as Prometheus
counters do after a restart.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ingest.spool.outbox import ActionSummary
from mailpulse import lake

#: Upper bounds (seconds) of the delivery latency histogram: receiver's 2xx to the answer.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
OUTCOMES = ("delivered", "retried", "dead")


class ActionStats:
    """Outcome and attempt counters and the latency histogram, per action; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[str, dict[str, int]] = {}
        self.attempts: dict[str, int] = {}
        self.latency_counts: dict[str, list[int]] = {}  # per bucket, then +Inf
        self.latency_sum: dict[str, float] = {}
        self.changed = True

    def attempted(self, action: str, outcome: str, latency: float | None) -> None:
        """Count one attempt of ``action`` ending in ``outcome`` (delivered, retried, dead);
        ``latency`` from the receiver's answer to delivery, for delivered ones."""
        with self._lock:
            self.attempts[action] = self.attempts.get(action, 0) + 1
            counts = self.outcomes.setdefault(action, dict.fromkeys(OUTCOMES, 0))
            counts[outcome] += 1
            if latency is not None:
                buckets = self.latency_counts.setdefault(action, [0] * (len(LATENCY_BUCKETS) + 1))
                buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
                self.latency_sum[action] = self.latency_sum.get(action, 0.0) + latency
            self.changed = True

    def delivered(self, action: str) -> int:
        """Deliveries of ``action`` since this dispatcher started."""
        with self._lock:
            return self.outcomes.get(action, {}).get("delivered", 0)

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data."""
        with self._lock:
            self.changed = False
            return {
                "outcomes": {name: dict(counts) for name, counts in self.outcomes.items()},
                "attempts": dict(self.attempts),
                "latency": {
                    "buckets": list(LATENCY_BUCKETS),
                    "counts": {name: list(c) for name, c in self.latency_counts.items()},
                    "sum": dict(self.latency_sum),
                },
            }


def publish(
    state_dir: Path,
    now: float,
    kinds: Mapping[str, str],
    summary: Mapping[str, ActionSummary],
    circuits: Mapping[str, str],
    stats: ActionStats,
) -> None:
    """Write the status snapshot: per action its kind, rows by state, oldest waiting row and
    circuit, then the counters."""
    actions: dict[str, dict[str, Any]] = {}
    for name in sorted({*kinds, *summary}):
        row = asdict(summary.get(name, ActionSummary()))
        row["delivered"] = stats.delivered(name)
        row["do"] = kinds.get(name)  # None: rows of an action no longer configured
        row["circuit"] = circuits.get(name, "closed")
        actions[name] = row
    status = {"updated_at": now, "actions": actions, **stats.snapshot()}
    lake.write_status(state_dir, status, name=lake.ACTIONS_STATUS_FILE)
