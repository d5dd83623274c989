"""A circuit breaker per action, so a dead destination is left alone instead of hammered.

Closed: deliveries go out as their slots allow. After ``breaker_failures`` failures in a
row it opens for ``breaker_seconds``: nothing of that action is sent, its rows wait in the
outbox (they are not attempted, so their give-up horizon is the only clock running). Then it
lets one trial delivery through (half-open): a success closes it, a failure opens it again.
Other actions never wait for it: each has its own slots and its own breaker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Breaker:
    """The state of one destination's circuit; used by the dispatcher's thread only."""

    failures_to_open: int
    open_seconds: float
    failures: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False

    def state(self, now: float) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.failures < self.failures_to_open:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def allowed(self, now: float, in_flight: int, slots: int) -> int:
        """How many more deliveries may start now, given ``in_flight`` of ``slots``."""
        state = self.state(now)
        if state == "closed":
            return max(0, slots - in_flight)
        if state == "half-open" and not self.trial_in_flight and in_flight == 0:
            return 1
        return 0

    def started(self, now: float) -> None:
        """A delivery starts; in half-open state it is the trial."""
        if self.state(now) == "half-open":
            self.trial_in_flight = True

    def record(self, failed: bool, now: float) -> None:
        """The result of a delivery."""
        self.trial_in_flight = False
        if not failed:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.failures_to_open:
            self.open_until = now + self.open_seconds
