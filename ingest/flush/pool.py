"""Worker processes that normalize chunks of a batch beside the flusher.

A chunk and what it becomes travel through files in a private folder under the data
directory's ``state/flush-chunks/``; only their names go through the executor's pipes. A
pipe moves 64 KiB at a time, and each piece waits for a thread of the flusher to get the
interpreter lock back from the thread that is normalizing (up to Python's 5 ms switch
interval): a 2 MiB chunk took dozens of such waits on the way out and again on the way back,
and the worker sat idle through them. A file is written and read in one call each.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import polars as pl

from ingest.flush.normalize import Chunk, Item, Quarantined, normalize_chunk
from ingest.providers import PROVIDERS, Provider
from mailpulse.config import SourceConfig

__all__ = ["ChunkPool"]

_worker_providers: dict[str, Provider] = {}
_worker_campaign_fields: dict[str, str | None] = {}


def _start_worker(sources: Mapping[str, SourceConfig]) -> None:
    """Build the providers once per worker process (a provider holds no open resources)."""
    for name, source in sources.items():
        _worker_providers[name] = PROVIDERS[source.provider](source)
        _worker_campaign_fields[name] = source.campaign
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(parent_sentinel: int) -> None:
    """End this worker when the flusher dies (``kill -9`` included): a spawned worker holds
    both ends of its task queue, so it would otherwise wait for work forever."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(1)


def _normalize_file(path: str) -> tuple[str, list[Quarantined]]:
    """Normalize the chunk pickled at ``path``; return where its events are (an Arrow IPC
    file beside it) and its quarantine entries (rare, so they go back through the pipe)."""
    items_file = Path(path)
    items: list[Item] = pickle.loads(items_file.read_bytes())
    items_file.unlink()
    chunk = normalize_chunk(_worker_providers, _worker_campaign_fields, items)
    events_file = items_file.with_suffix(".arrow")
    chunk.events.write_ipc(events_file, compression="uncompressed")
    return str(events_file), chunk.quarantined


def _settle(chunk: Future[Chunk], normalized: Future[tuple[str, list[Quarantined]]]) -> None:
    """Read back what a worker made of a chunk into ``chunk`` (or why it failed)."""
    try:
        path, quarantined = normalized.result()
        events = pl.read_ipc(path)  # a mapped file stays readable once unlinked (POSIX)
        os.unlink(path)
    except BaseException as exc:  # the batch's result() raises it, and is not committed
        chunk.set_exception(exc)
    else:
        chunk.set_result(Chunk(events, quarantined))


class ChunkPool:
    """Worker processes that normalize chunks, started at the first chunk sent to them.

    They are spawned, not forked: the flusher may run beside other threads (the receiver's),
    and a forked child would inherit their locks in whatever state they were. A worker that
    dies breaks the pool; the chunk's ``result()`` raises, the batch is not committed, and
    the next flush reads the same records again with a new pool.
    """

    def __init__(self, sources: Mapping[str, SourceConfig], workers: int, scratch: Path) -> None:
        """``scratch``: where the pool keeps its folder; a local, writable directory that only
        the flusher holding the data directory's lock uses."""
        self.sources = dict(sources)
        self.workers = workers
        self.scratch = scratch
        self._executor: ProcessPoolExecutor | None = None
        self._folder: Path | None = None
        self._names = itertools.count()
        self._running: list[Future[Chunk]] = []

    def has_room(self) -> bool:
        """Whether the workers are short of work: fewer than two chunks each, one running and
        one waiting (so a worker never idles while its next chunk is sent)."""
        self._running = [future for future in self._running if not future.done()]
        return len(self._running) < 2 * self.workers

    def submit(self, items: Sequence[Item]) -> Future[Chunk]:
        """Normalize ``items`` in a worker; the future holds the chunk."""
        if self._executor is None or self._folder is None:
            self._folder = self._new_folder()
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.sources,),
            )
        items_file = self._folder / f"{next(self._names)}.items"
        items_file.write_bytes(pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL))
        chunk: Future[Chunk] = Future()
        normalized = self._executor.submit(_normalize_file, str(items_file))
        normalized.add_done_callback(lambda done: _settle(chunk, done))
        self._running.append(chunk)
        return chunk

    def _new_folder(self) -> Path:
        """This pool's folder. What is already in ``scratch`` was left by a flusher that was
        killed (one flusher works at a time, and this one holds the lock): it goes first."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        for left in self.scratch.iterdir():
            shutil.rmtree(left, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.scratch))

    def close(self) -> None:
        """Stop the workers and remove their files (a later ``submit`` starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._running = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
