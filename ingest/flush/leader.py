"""The flusher lead: one lake writer (flush, compaction, rollup rebuild, replay) at a time.

* ``[spool] engine = "local"``: an ``flock`` on ``state/flusher.lock``, one writer per data
  directory, and the state in ``state/flusher.sqlite``;
* ``engine = "postgres"``: a session-level advisory lock in the shared database, one writer
  across every host, taken on the connection of the shared state
  (:class:`~ingest.flush.pg_state.PostgresFlusherState`). A leader that dies (``kill -9``,
  a host gone) loses its session and with it the lead; the next leader's ``recover()`` then
  undoes the dead one's uncommitted files from the shared journal. A connection pooler in
  transaction mode would break the lock: the flusher must reach PostgreSQL directly or
  through a session-mode pool.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.errors import FlusherBusy, LakeError
from ingest.flush.pg_state import PostgresFlusherState
from ingest.flush.state import FlusherState
from mailpulse.config import Config

#: The state of whichever engine the configuration names; both have the same methods.
AnyFlusherState = FlusherState | PostgresFlusherState

_RETRY_SECONDS = 0.05


@contextmanager
def flusher_lock(state_dir: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the one-flusher-per-data-directory lock, or raise :class:`FlusherBusy`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "flusher.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise FlusherBusy("another flusher is working on this data directory") from None
                time.sleep(_RETRY_SECONDS)
        yield
    finally:
        os.close(fd)


@contextmanager
def shared_lead(state: PostgresFlusherState, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the lead across every host sharing ``state``'s database, or raise
    :class:`FlusherBusy` once ``wait_seconds`` have passed without it."""
    deadline = time.monotonic() + wait_seconds
    while not state.try_lead():
        if time.monotonic() >= deadline:
            raise FlusherBusy("another flusher (on this host or another) holds the lead")
        time.sleep(_RETRY_SECONDS)
    try:
        yield
    finally:
        # Closing the connection releases the lock too: a failure here must not hide the
        # error the work may have raised.
        with contextlib.suppress(LakeError):
            state.release_lead()


@contextmanager
def locked_state(config: Config, wait_seconds: float = 0.0) -> Iterator[AnyFlusherState]:
    """The lead and the recovered state of ``config``'s engine: how every lake writer starts
    its work. Raises :class:`FlusherBusy` when another writer keeps the lead."""
    if config.spool.engine == "postgres" and config.spool.url is not None:
        shared = PostgresFlusherState(config.spool.url.reveal(), config.lake_store)
        try:
            with shared_lead(shared, wait_seconds):
                shared.recover()
                yield shared
        finally:
            shared.close()
        return
    with flusher_lock(config.state_dir, wait_seconds):
        local = FlusherState(config.state_dir, config.lake_store)
        try:
            local.recover()
            yield local
        finally:
            local.close()
