"""Group commit, shared by the spool engines: concurrent appends of one process share one
commit.

Requests that arrive while a commit is under way form the next batch, whose first member
commits it in one transaction and wakes exactly the members of that batch. An engine supplies
the transaction (:meth:`GroupCommitSpool._insert`), the bytes waiting, and how its failures
read (:meth:`GroupCommitSpool._failed`).
"""

from __future__ import annotations

import threading
import time

from ingest.errors import SpoolUnavailable
from ingest.spool.record import SpoolRecord

COMMIT_WAIT_SECONDS = 10.0  # a commit slower than this is a storage failure, answered 503
_USAGE_REFRESH_SECONDS = 0.5  # how stale the quota's view of other processes' bytes may be


class _Batch:
    """Records that share one commit.

    ``done`` is a plain lock, held from the start and released once the batch is committed:
    each waiter takes it and passes it straight on, so the wake-ups cost a lock hand-off each
    rather than ``threading.Event``'s condition machinery (written in Python).
    """

    __slots__ = ("done", "failure", "rows", "size")

    def __init__(self) -> None:
        self.rows: list[tuple[bytes, bytes, int]] = []  # header, body, size
        self.size = 0
        self.done = threading.Lock()
        self.done.acquire()
        self.failure: str | None = None

    def wait(self, timeout: float) -> bool:
        """Block until the batch is committed (True) or ``timeout`` passed (False)."""
        if not self.done.acquire(timeout=timeout):
            return False
        self.done.release()  # the next waiter's turn
        return True


class GroupCommitSpool:
    """The appending half of a spool engine; thread-safe."""

    #: What the engine's storage raises; anything else is a bug and propagates.
    storage_errors: tuple[type[BaseException], ...] = (OSError,)
    #: The most records one commit takes; a full batch is closed and the next one started.
    max_batch_rows = 10_000

    def __init__(self, *, max_bytes: int, retry_after: int) -> None:
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one commit of this process at a time
        self._pending = _Batch()
        self._usage = 0
        self._usage_checked = -_USAGE_REFRESH_SECONDS
        self.commits = 0  # appending commits this process made (batches, not records)

    # -- appending

    def append(self, record: SpoolRecord) -> None:
        """Make ``record`` durable, or raise :class:`SpoolUnavailable`; never both.

        The first request to join a batch leads it: it waits for the commit before it to end
        (meanwhile later requests join its batch), commits the whole batch and wakes exactly
        that batch's members. Every other request sleeps until its own batch is done.
        """
        header = record.header()
        size = len(header) + len(record.body)
        self._check_quota(size)
        with self._lock:
            if len(self._pending.rows) >= self.max_batch_rows:
                self._pending = _Batch()  # its leader is already waiting to commit it
            batch = self._pending
            batch.rows.append((header, record.body, size))
            batch.size += size
            leads = len(batch.rows) == 1
        if leads:
            self._lead(batch)
        elif not batch.wait(COMMIT_WAIT_SECONDS):
            raise SpoolUnavailable("the spool did not commit in time", retry_after=self.retry_after)
        if batch.failure is not None:
            raise SpoolUnavailable(batch.failure, retry_after=self.retry_after)

    def _lead(self, batch: _Batch) -> None:
        """Commit ``batch`` once this process's previous commit is over."""
        batch.failure = "the spool commit did not finish"  # until it does
        try:
            if not self._write_lock.acquire(timeout=COMMIT_WAIT_SECONDS):
                with self._lock:  # close it, or later requests would join a failed batch
                    if self._pending is batch:
                        self._pending = _Batch()
                batch.failure = "the spool did not commit in time"
                return
            try:
                with self._lock:  # close the batch: whoever comes now starts the next one
                    if self._pending is batch:  # (a full batch was closed when it filled)
                        self._pending = _Batch()
                self._insert(batch.rows, batch.size)
                self.commits += 1
                batch.failure = None
            except self.storage_errors as exc:
                batch.failure = self._failed("append", exc, len(batch.rows))
            finally:
                self._write_lock.release()
        finally:
            batch.done.release()

    def _check_quota(self, incoming: int) -> None:
        now = time.monotonic()
        if now - self._usage_checked > _USAGE_REFRESH_SECONDS:
            self._usage = self.pending_bytes()  # other processes' appends, the flusher's acks
            self._usage_checked = now
        if self._usage + incoming > self.max_bytes:
            raise SpoolUnavailable(
                "the spool is full; the flusher is behind or stopped", retry_after=self.retry_after
            )

    def _quota_problem(self) -> str | None:
        """The last check of ``check_writable``, every engine's: is there room left?"""
        try:
            if self.pending_bytes() >= self.max_bytes:
                return "the spool is full"
        except SpoolUnavailable as error:
            return str(error)
        return None

    def _unavailable(self, action: str, exc: BaseException) -> SpoolUnavailable:
        """A storage failure, logged by the engine, as the error the client's 503 carries."""
        return SpoolUnavailable(self._failed(action, exc), retry_after=self.retry_after)

    def _forget_usage(self) -> None:
        """Read the bytes waiting again at the next append (an acknowledgement freed room)."""
        self._usage_checked = -_USAGE_REFRESH_SECONDS

    # -- the engine's part

    def _insert(self, rows: list[tuple[bytes, bytes, int]], size: int) -> None:
        """Commit ``rows`` (header, body, size) in one transaction; raise a storage error."""
        raise NotImplementedError

    def pending_bytes(self) -> int:
        """Bytes appended and not yet acknowledged, read from the store now."""
        raise NotImplementedError

    def _failed(self, action: str, exc: BaseException, records: int = 0) -> str:
        """Log a storage failure; return the sentence the client's 503 carries."""
        raise NotImplementedError
