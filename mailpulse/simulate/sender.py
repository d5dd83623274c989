"""Sending planned requests as ESPs do: concurrently, rate-limited, retried on 429/503.

Each attempt is encoded afresh (``Esp.encode``), so timestamps, nonces and signatures are
new on every retry and every repeat, while the ESP-side event ids stay the same. Retries
follow ESP practice in compressed time: exponential backoff with jitter, honouring
``Retry-After``, for connection errors, 408, 429 and 5xx; any other 4xx is final.

Two attempts at one batch never carry the same timestamp second: a real ESP's repeats and
retries are seconds to hours apart, and receivers of Standard Webhooks (Resend) refuse a
second request with the same id and timestamp as a replay.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from mailpulse.simulate.esp import Esp
from mailpulse.simulate.schedule import Delivery

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 5.0  # ESPs wait minutes to hours; a simulation compresses that


@dataclass(frozen=True)
class Target:
    """Where one source's requests go and how they are signed."""

    source: str
    provider: Esp  # the ESP's sending side
    url: str  # the URL the requests are POSTed to
    signed_url: str  # the URL as registered with the ESP (Mandrill signs it)
    keys: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the receiver finally answered one planned request."""

    target: Target
    delivery: Delivery
    status: int | None  # None: no answer (connection errors until attempts ran out)
    attempts: int
    error: str | None = None  # the receiver's error code, or the connection error

    @property
    def accepted(self) -> bool:
        """A 2xx: the receiver has the request durably."""
        return self.status is not None and 200 <= self.status < 300


class RateLimit:
    """At most ``rate`` requests per second across every thread (0: unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next request may start."""
        if not self.interval:
            return
        with self._lock:
            start = max(self._next, time.monotonic())
            self._next = start + self.interval
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class SendClock:
    """Send times that never repeat a second for one key (a batch of one source).

    Waits for the next second when a key was used in the current one; thread-safe.
    """

    def __init__(self) -> None:
        self._seconds: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def now(self, key: Hashable) -> float:
        """Now, or the start of the next second ``key`` has not used (after waiting for it)."""
        with self._lock:
            now = time.time()
            last = self._seconds.get(key)
            second = int(now) if last is None else max(int(now), last + 1)
            self._seconds[key] = second
        if second > now:
            time.sleep(second - now)
        # Stay inside the reserved second even if this thread was held up after sleeping.
        return second + min(0.999, max(0.0, time.time() - second))


class Sender:
    """Sends deliveries with ``concurrency`` threads, one ``requests.Session`` each."""

    def __init__(self, *, concurrency: int = 8, rate: float = 0.0, timeout: float = 30.0) -> None:
        self.concurrency = concurrency
        self.limit = RateLimit(rate)
        self.timeout = timeout
        self._local = threading.local()
        self.clock = SendClock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def send_one(self, target: Target, delivery: Delivery) -> Outcome:
        """Send one planned request, retrying as an ESP does, and say how it ended."""
        rng = random.Random()
        status: int | None = None
        error: str | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.limit.wait()
            now = self.clock.now((target.source, delivery.batch))
            request = target.provider.encode(
                delivery.events, url=target.signed_url, now=now, sender=target.keys
            )
            wait: float | None = None
            try:
                response = self._session().request(
                    request.method,
                    target.url,
                    data=request.body,
                    headers=dict(request.headers),
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                status, error = None, type(exc).__name__
            else:
                status, error = response.status_code, _error_code(response)
                wait = _retry_after(response.headers.get("Retry-After"))
                if status < 300 or status not in RETRYABLE:
                    return Outcome(target, delivery, status, attempt, error)
            if attempt < MAX_ATTEMPTS:
                backoff = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1))
                pause = min(wait, MAX_BACKOFF_SECONDS) if wait is not None else backoff
                time.sleep(pause * rng.uniform(0.8, 1.2))
        return Outcome(target, delivery, status, MAX_ATTEMPTS, error)

    def send(
        self,
        jobs: Sequence[tuple[Target, Delivery]],
        progress: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        """Send every job (in order of submission, ``concurrency`` at a time)."""

        def run(job: tuple[Target, Delivery]) -> Outcome:
            outcome = self.send_one(*job)
            if progress is not None:
                progress()
            return outcome

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(run, jobs))


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal; otherwise nothing is drawn."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    lock = threading.Lock()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance() -> None:
            with lock:
                bar.advance(task)

        yield advance


def _error_code(response: requests.Response) -> str | None:
    if response.status_code < 300:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    code = document.get("error") if isinstance(document, dict) else None
    return str(code) if code is not None else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
