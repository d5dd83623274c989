"""Acting on events inside ``mailpulse serve``: the tailer and the dispatcher, as two threads.

One runner works per data directory (an ``flock`` on ``state/actions.lock``, as the flusher
has its own); with the shared PostgreSQL engine, one per database: the host holding
PostgreSQL's actions lock leads, and another takes over when it dies. With no action
configured it runs nothing, and tells the spool not to keep records for it. On SIGHUP it
takes the new actions without a restart; on SIGTERM it matches what the receiver stored
last, lets the deliveries in flight finish (each bounded by its timeout) and leaves
everything else in the outbox for the next start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable

import psycopg

from ingest.actions.dispatcher import Dispatcher
from ingest.actions.tailer import Tailer
from ingest.errors import SpoolUnavailable
from ingest.spool import Spool, open_spool
from ingest.spool.outbox import Outbox, open_outbox
from ingest.spool.pg import ACTIONS_LOCK, PgConnection
from mailpulse.config import Config

log = logging.getLogger(__name__)

_LEADER_POLL_SECONDS = 2.0  # how often a waiting host asks for the lead, and a leader checks


class ActionsRunner:
    """Starts, reconfigures and stops the actions of one ``serve`` process."""

    def __init__(
        self,
        config: Config,
        *,
        spool: Spool | None = None,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.spool = spool if spool is not None else open_spool(config)
        self.outbox = outbox if outbox is not None else open_outbox(config)
        self.clock = clock
        self.tailer: Tailer | None = None
        self.dispatcher: Dispatcher | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_fd: int | None = None
        self._started = False

    def start(self) -> bool:
        """Run the actions of the configuration, if it has any; whether they run (with the
        shared engine: whether this host stands ready to run them when it leads)."""
        if not self.config.actions:
            self._release()
            return False
        self._started = True
        if self.config.spool.engine == "postgres" and self.config.spool.url is not None:
            # Several hosts share the outbox: one of them leads, the others wait their turn.
            url = self.config.spool.url.reveal()
            thread = threading.Thread(target=self._lead_when_free, args=(url,), daemon=True)
            thread.start()
            self._threads.append(thread)
            return True
        if not self._take_lock():
            log.warning("actions not started: another process runs them for this data directory")
            return False
        self._threads += self._begin(self._stop)
        return True

    def _begin(self, stop: threading.Event) -> list[threading.Thread]:
        """Start the tailer and the dispatcher until ``stop`` is set."""
        self.outbox.enqueue([], self.outbox.position() or 0, self.clock())  # hold the spool
        self.dispatcher = Dispatcher(
            self.config.actions, self.outbox, self.config.state_dir, clock=self.clock
        )
        self.tailer = Tailer(
            self.config, self.spool, self.outbox, clock=self.clock, on_new=self.dispatcher.wake
        )
        threads = []
        for name, target in (("actions-tailer", self.tailer.run), ("actions", self.dispatcher.run)):
            thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
            thread.start()
            threads.append(thread)
        log.warning("actions running: %s", ", ".join(sorted(self.config.actions)))
        return threads

    def _lead_when_free(self, url: str) -> None:
        """Hold PostgreSQL's actions lock (a session lock: a host that dies lets go of it)
        and run the actions while it is held; try again every few seconds otherwise."""
        session = PgConnection(url)
        while not self._stop.is_set():
            try:
                leads = bool(
                    session.query("SELECT pg_try_advisory_lock(%s)", (ACTIONS_LOCK,))[0][0]
                )
            except psycopg.Error:
                leads = False
                session.reset()
            if not leads:
                self._stop.wait(_LEADER_POLL_SECONDS)
                continue
            lead = threading.Event()
            threads = self._begin(lead)
            while not self._stop.wait(_LEADER_POLL_SECONDS):
                try:  # the lock lives as long as this session: a lost session is a lost lead
                    session.get().execute("SELECT 1")
                except psycopg.Error:
                    log.warning("actions paused: the connection holding their lead was lost")
                    break
            lead.set()
            for thread in threads:
                thread.join()
            self.tailer = self.dispatcher = None
            session.reset()
        session.reset()

    def reload(self, config: Config) -> None:
        """Use ``config``'s sources and actions from now on."""
        self.config = config
        if not self._started:
            self.start()
            return
        if self.tailer is None or self.dispatcher is None:
            return  # waiting for the lead: it starts with the new configuration

        self.tailer.configure(config)
        self.dispatcher.configure(config.actions)

    def stop(self) -> None:
        """Match what is stored, finish the deliveries in flight, and stop."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _take_lock(self) -> bool:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config.state_dir / "actions.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _release(self) -> None:
        try:
            if self.outbox.position() is not None:
                self.outbox.release()
        except SpoolUnavailable as error:
            log.error("could not release the spool records kept for actions: %s", error)
