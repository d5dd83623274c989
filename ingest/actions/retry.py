"""When to try an action again, and when to stop: one policy for every destination.

A 2xx is delivered. A 4xx other than 408, 409, 425 and 429 is final: the request itself is
wrong (bad credentials, a malformed address) and sending it again cannot help, so the action
goes to the dead letters with the answer. Anything else (5xx, 408/409/425/429, a timeout, a
refused connection) is tried again after an exponential backoff with full jitter (a random
wait between zero and ``first * 2**(attempt - 1)``, capped), never sooner than the answer's
``Retry-After``, until the action's give-up horizon passes; then it is dead-lettered too,
never dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ingest.actions.destinations.base import Answer
from mailpulse.actions_config import ActionConfig

#: 4xx answers that mean "not now" rather than "never": timeout, conflict, too early, too many.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after an attempt: ``delivered``, ``pending`` (again at ``next_at``) or
    ``dead``; ``counts_as_failure`` feeds the circuit breaker (a final 4xx does not: the
    destination is up, the request was refused)."""

    state: str
    next_at: float
    detail: str
    counts_as_failure: bool


def is_final(status: int | None) -> bool:
    """A refusal that no retry can change."""
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX


def backoff(action: ActionConfig, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
    ceiling = min(action.max_retry_seconds, action.first_retry_seconds * 2 ** (attempt - 1))
    return float(ceiling * rand())


def judge(
    action: ActionConfig,
    answer: Answer,
    *,
    attempt: int,
    created_at: float,
    now: float,
    rand: Callable[[], float] = random.random,
) -> Verdict:
    """The verdict on one attempt of an action recorded at ``created_at``."""
    detail = _describe(answer)
    if answer.ok:
        return Verdict("delivered", now, detail, counts_as_failure=False)
    if is_final(answer.status):
        return Verdict("dead", now, detail, counts_as_failure=False)
    wait = backoff(action, attempt, rand)
    if answer.retry_after is not None:
        wait = max(wait, answer.retry_after)
    give_up_at = created_at + action.give_up_after_hours * 3600
    if now + wait > give_up_at:
        hours = f"{action.give_up_after_hours:g}"
        return Verdict("dead", now, f"gave up after {hours} h: {detail}", counts_as_failure=True)
    return Verdict("pending", now + wait, detail, counts_as_failure=True)


def _describe(answer: Answer) -> str:
    if answer.status is None:
        return answer.detail
    return f"{answer.status}: {answer.detail}" if answer.detail else str(answer.status)
