"""How an ESP delivers the events: batches, repeats, and the order they arrive in.

ESPs that batch (SendGrid, Mandrill, SparkPost, grouped Mailjet) collect what happened over a
short window and post it together, never more than ``max_batch`` events per request; the
others post each event alone. ESPs also send a batch again although it was acknowledged
(SendGrid users report 3 to 46 copies of one event), and requests overtake each other on the
way. The plan below is deterministic for a seed; the sender executes it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from mailpulse.simulate.esp.base import SimulatedEvent

#: Seconds of event time an ESP collects into one batch (SendGrid posts every 30 s).
BATCH_WINDOW_SECONDS = 30.0
#: Out-of-order arrival: a request may be overtaken by the next this many requests.
REORDER_WINDOW = 8
#: How far (in requests) behind the original a repeated batch arrives.
REPEAT_DELAY = (1, 40)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request to send: a batch of events, either first time or a repeat."""

    batch: int  # index of the batch; repeats share their original's
    events: tuple[SimulatedEvent, ...]
    repeat: bool = False


def batches(
    events: Sequence[SimulatedEvent], max_batch: int, window: float = BATCH_WINDOW_SECONDS
) -> list[tuple[SimulatedEvent, ...]]:
    """Group events (in the order they happened) as the ESP does.

    A batch closes when it holds ``max_batch`` events or when the next event happened more
    than ``window`` seconds after the batch's first.
    """
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    grouped: list[tuple[SimulatedEvent, ...]] = []
    current: list[SimulatedEvent] = []
    for event in sorted(events, key=lambda e: (e.occurred_at, e.sequence)):
        if current and (
            len(current) >= max_batch or event.occurred_at - current[0].occurred_at > window
        ):
            grouped.append(tuple(current))
            current = []
        current.append(event)
    if current:
        grouped.append(tuple(current))
    return grouped


def plan(
    events: Sequence[SimulatedEvent],
    *,
    max_batch: int,
    duplicates: float,
    out_of_order: bool,
    seed: int,
    window: float = BATCH_WINDOW_SECONDS,
) -> list[Delivery]:
    """Every request the ESP makes, in arrival order.

    ``duplicates`` is the share of batches sent a second time (a few a third time and more,
    as the reports of many copies say), later than the first. With ``out_of_order`` a request
    may arrive after up to ``REORDER_WINDOW`` later ones; without it, first deliveries keep
    the order the events happened in. ``window`` is the batching window (see
    :func:`batches`); an infinite one fills every batch, as for a high-volume account.
    """
    if not 0.0 <= duplicates <= 1.0:
        raise ValueError("duplicates must be between 0 and 1")
    rng = random.Random(f"plan:{seed}")
    keyed: list[tuple[float, int, Delivery]] = []
    for index, batch in enumerate(batches(events, max_batch, window)):
        position = float(index)
        if out_of_order:
            position += rng.uniform(0, REORDER_WINDOW)
        keyed.append((position, len(keyed), Delivery(index, batch)))
        copies = 0
        while rng.random() < (duplicates if copies == 0 else duplicates / 4) and copies < 5:
            copies += 1
            later = position + copies * rng.uniform(*REPEAT_DELAY)
            keyed.append((later, len(keyed), Delivery(index, batch, repeat=True)))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [delivery for _, _, delivery in keyed]
