"""The durable intake: append-only segment files with group commit.

Promise 1 lives here: :meth:`Spool.append` returns only once the request's bytes are written
and ``fdatasync``'d. Many threads of one worker share one fsync ("group commit"): requests that
arrive while a sync is under way form the next batch, whose first member writes it in one
``write``, syncs once and wakes exactly the members of that batch. A blocked worker per fsync
is what makes naive durability slow; one fsync per group is not.

Each worker process owns its own segment file and holds an exclusive ``flock`` on it while it
writes; the flusher reads segments up to their last complete record and knows a segment is
finished (safe to delete once read) when it can take that lock itself. ``kill -9`` releases
the lock, so a dead worker's segment is picked up like any other.

A record on disk::

    b"MPS1" | header length (u32) | body length (u32) | CRC-32 of header+body (u32) | header | body

The header is JSON (source, time, client address, headers without credentials); the body is
the request body exactly as received. A torn tail (a worker killed mid-write, before it could
acknowledge anything in it) fails its length or CRC check and is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import random
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ingest.errors import SpoolUnavailable

log = logging.getLogger(__name__)

MAGIC = b"MPS1"
FRAME = struct.Struct("<4sIII")
SEGMENT_SUFFIX = ".seg"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
PREALLOCATE_BYTES = 4 * 1024 * 1024
# A batch this large is appended past the zeros instead of first writing zeros for it: the
# size change its sync commits costs less than writing every byte twice.
GROW_BATCH_BYTES = 256 * 1024
_IOV_MAX = 1024  # iovecs per pwritev, the Linux limit
_RWF_DSYNC = getattr(os, "RWF_DSYNC", 0)  # Linux 4.7+; elsewhere a separate fdatasync
_USAGE_REFRESH_SECONDS = 1.0
_SYNC_WAIT_SECONDS = 10.0  # a sync slower than this is a storage failure, answered 503


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One accepted request as the spool keeps it."""

    request_id: str
    source: str
    received_at: int  # epoch microseconds
    remote_addr: str
    method: str
    url: str
    content_type: str
    headers: dict[str, str]  # lower-cased, credentials removed
    body: bytes

    def encode(self) -> bytes:
        """The framed bytes of this record."""
        return b"".join(self.encode_parts())

    def encode_parts(self) -> tuple[bytes, bytes, bytes]:
        """The framed record as (frame, header, body): written with one ``pwritev``, so a
        large body is never copied into a frame of its own."""
        header = orjson.dumps(
            {
                "id": self.request_id,
                "source": self.source,
                "received_at": self.received_at,
                "remote_addr": self.remote_addr,
                "method": self.method,
                "url": self.url,
                "content_type": self.content_type,
                "headers": self.headers,
            }
        )
        crc = zlib.crc32(self.body, zlib.crc32(header))
        return FRAME.pack(MAGIC, len(header), len(self.body), crc), header, self.body

    @classmethod
    def decode(cls, header: bytes, body: bytes) -> SpoolRecord:
        """Rebuild a record from its framed header and body."""
        fields: dict[str, Any] = orjson.loads(header)
        return cls(
            request_id=fields["id"],
            source=fields["source"],
            received_at=fields["received_at"],
            remote_addr=fields["remote_addr"],
            method=fields["method"],
            url=fields["url"],
            content_type=fields["content_type"],
            headers=fields["headers"],
            body=body,
        )


class _Batch:
    """Records that share one write and one sync.

    ``done`` is a plain lock, held from the start and released once the batch is synced:
    each waiter takes it and passes it straight on, so the wake-ups cost a lock hand-off each
    rather than ``threading.Event``'s condition machinery (written in Python).
    """

    __slots__ = ("done", "failure", "records", "size")

    def __init__(self) -> None:
        self.records: list[bytes] = []  # frame, header and body of each record, in turn
        self.size = 0
        self.done = threading.Lock()
        self.done.acquire()
        self.failure: str | None = None

    def wait(self, timeout: float) -> bool:
        """Block until the batch is synced (True) or ``timeout`` passed (False)."""
        if not self.done.acquire(timeout=timeout):
            return False
        self.done.release()  # the next waiter's turn
        return True


def new_request_id() -> str:
    """A unique, roughly time-ordered request id.

    The random part only has to differ between requests of the same nanosecond, so it comes
    from :mod:`random` (reseeded in every forked worker), not the operating system: a call to
    ``os.urandom`` would let another thread take the interpreter lock in the middle of a request.
    """
    return f"{time.time_ns():x}-{random.getrandbits(48):012x}"


class Spool:
    """The writer side, one per worker process, safe to share between its threads."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        retry_after: int = 30,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.segment_bytes = segment_bytes
        self._reset()

    def _reset(self) -> None:
        # Called again in a forked child: locks, file and batches belong to one process.
        self._pid = os.getpid()
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch written and synced at a time
        self._pending = _Batch()
        self._fd: int | None = None
        self._dsync = bool(_RWF_DSYNC)  # small batches written and synced in one call
        self._segment_size = 0  # bytes of records written to the current segment
        self._allocated = 0  # bytes of the current segment already on disk (zeros past the data)
        self._usage = 0
        self._usage_checked = 0.0

    def append(self, record: SpoolRecord) -> None:
        """Make ``record`` durable, or raise :class:`SpoolUnavailable`; never both.

        The first request to join a batch leads it: it waits for the sync before it to end
        (meanwhile later requests join its batch), writes the whole batch, syncs once and wakes
        exactly that batch's members. Every other request sleeps until its own batch is done.
        """
        if self._pid != os.getpid():
            self._reset()
        parts = record.encode_parts()
        size = sum(map(len, parts))
        self._check_quota(size)
        with self._lock:
            batch = self._pending
            batch.records.extend(parts)
            batch.size += size
            leads = len(batch.records) == len(parts)
        if leads:
            self._lead(batch)
        elif not batch.wait(_SYNC_WAIT_SECONDS):
            raise SpoolUnavailable("the spool did not sync in time", retry_after=self.retry_after)
        if batch.failure is not None:
            raise SpoolUnavailable(batch.failure, retry_after=self.retry_after)

    def _lead(self, batch: _Batch) -> None:
        """Write and sync ``batch`` once the previous batch's sync is over."""
        try:
            if not self._write_lock.acquire(timeout=_SYNC_WAIT_SECONDS):
                with self._lock:  # close it, or later requests would join a failed batch
                    if self._pending is batch:
                        self._pending = _Batch()
                batch.failure = "the spool did not sync in time"
                return
            try:
                with self._lock:  # close the batch: whoever comes now starts the next one
                    self._pending = _Batch()
                self._write_and_sync(batch.records, batch.size)
            except OSError as exc:
                batch.failure = _describe(exc)
                log.error(
                    "spool write failed",
                    extra={"reason": batch.failure, "records": len(batch.records) // 3},
                )
            finally:
                self._write_lock.release()
        finally:
            batch.done.release()

    def _write_and_sync(self, parts: list[bytes], size: int) -> None:
        if self._fd is None or self._segment_size >= self.segment_bytes:
            self._open_segment()
        assert self._fd is not None
        try:
            end = self._segment_size + size
            if end > self._allocated:
                if size >= GROW_BATCH_BYTES:
                    self._allocated = end  # the file grows; this sync commits the new size
                else:
                    self._preallocate(end)
            if not self._pwrite(parts):
                os.fdatasync(self._fd)
        except OSError:
            # The tail of this segment is now unknown: never write after it again.
            self._close_segment()
            raise
        self._segment_size = end
        self._usage += size

    def _pwrite(self, parts: list[bytes]) -> bool:
        """Write ``parts`` at the end of the data; True when the write was also synced."""
        assert self._fd is not None
        if self._dsync:
            try:
                return _pwrite_all(self._fd, parts, self._segment_size, dsync=True)
            except OSError as exc:
                if exc.errno != errno.EOPNOTSUPP:
                    raise
                self._dsync = False  # a file that takes no per-write flags: sync separately
        return _pwrite_all(self._fd, parts, self._segment_size, dsync=False)

    def _preallocate(self, needed: int) -> None:
        """Write zeros ahead of the data, so syncing a record does not change the file's size.

        A sync that only flushes data blocks is much cheaper than one that must also commit a
        new file size to the journal; readers stop at the first all-zero frame header.
        """
        assert self._fd is not None
        target = max(needed, self._allocated + PREALLOCATE_BYTES)
        zeros = bytes(min(target - self._allocated, PREALLOCATE_BYTES))
        while self._allocated < target:
            chunk = zeros[: target - self._allocated]
            self._allocated += os.pwrite(self._fd, chunk, self._allocated)
        os.fsync(self._fd)

    def _open_segment(self) -> None:
        self._close_segment()
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temporary = self.directory / f".{name}.new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Locked before it gets its visible name, so the flusher never sees it unlocked.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / f"{name}{SEGMENT_SUFFIX}"
            os.rename(temporary, path)
            _fsync_directory(self.directory)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._segment_size = 0
        self._allocated = 0

    def _close_segment(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _check_quota(self, incoming: int) -> None:
        now = time.monotonic()
        if now - self._usage_checked > _USAGE_REFRESH_SECONDS:
            # Our own preallocated zeros hold no requests: they do not count.
            self._usage = spool_usage(self.directory) - (self._allocated - self._segment_size)
            self._usage_checked = now
        if self._usage + incoming > self.max_bytes:
            raise SpoolUnavailable(
                "the spool is full; the flusher is behind or stopped", retry_after=self.retry_after
            )

    def check_writable(self) -> str | None:
        """None when a write would be accepted now, else the reason it would not."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}-{threading.get_ident()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"probe")
                os.fdatasync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            return _describe(exc)
        if spool_usage(self.directory) >= self.max_bytes:
            return "the spool is full"
        return None

    def close(self) -> None:
        """Release this process's segment (the flusher may then delete it once read)."""
        with self._write_lock:
            self._close_segment()


def _pwrite_all(fd: int, parts: list[bytes], position: int, *, dsync: bool) -> bool:
    """Write ``parts`` back to back from ``position``, however the kernel splits the writes.

    With ``dsync``, a batch that fits one ``pwritev`` is written with ``RWF_DSYNC``: durable
    when the call returns, and then this returns True. That saves a system call per batch, and
    the leading thread gives up and takes back the interpreter lock once instead of twice.
    Otherwise the caller syncs.
    """
    flags = _RWF_DSYNC if dsync and len(parts) <= _IOV_MAX else 0
    for start in range(0, len(parts), _IOV_MAX):
        chunk = parts[start : start + _IOV_MAX]
        expected = sum(map(len, chunk))
        written = os.pwritev(fd, chunk, position, flags)
        if written < expected:  # a short write: finish the rest of this chunk by hand
            flags = 0  # and leave the sync to the caller
            view = memoryview(b"".join(chunk))[written:]
            offset = position + written
            while view:
                done = os.pwrite(fd, view, offset)
                view = view[done:]
                offset += done
        position += expected
    return flags != 0


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk holding the spool is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the spool directory is not writable"
    return f"the spool cannot be written ({errno.errorcode.get(exc.errno or 0, 'error')})"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_usage(directory: Path) -> int:
    """Bytes held in segment files (read or not)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(SEGMENT_SUFFIX):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        continue
    except OSError:
        return 0  # no spool folder (yet): nothing held
    return total
