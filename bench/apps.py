"""Gunicorn app factories for `bench/receive.py`: `bench.apps:noop()` and `bench.apps:full()`,
and two diagnostic steps between them that `--ladder` adds (never durable, never the product);
`bench.apps:shared()` is the full receiver on the PostgreSQL spool (`bench/shared_spool.py`).

Gunicorn imports the app in its own processes, so the full receiver reads its data directory
and its (per-run, generated) secret from environment variables the benchmark sets for the
gunicorn subprocess (and ``shared()`` its database URL). Nothing secret is ever written to disk
or the command line.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from ingest.spool.connection import Connection
from ingest.spool.sqlite import SqliteSpool

DATA_DIR_ENV = "MAILPULSE_BENCH_DATA_DIR"
SECRET_ENV = "MAILPULSE_BENCH_SECRET"
SPOOL_URL_ENV = "MAILPULSE_BENCH_SPOOL_URL"
SOURCE = "bench"


def noop() -> Flask:
    """The baseline: a no-op Flask endpoint (:mod:`bench.noop_app`)."""
    from bench.noop_app import create_app

    return create_app()


def full() -> Flask:
    """The real receiver: generic-provider HMAC check and the fsync'd spool."""
    return _receiver({})


def shared() -> Flask:
    """The real receiver on the shared spool engine, PostgreSQL at
    ``$MAILPULSE_BENCH_SPOOL_URL``: each request acknowledged once its transaction committed."""
    return _receiver({"spool": {"engine": "postgres", "url": os.environ[SPOOL_URL_ENV]}})


def _receiver(extra: dict[str, Any]) -> Flask:
    """The real receiver with one ``generic`` source and the ``extra`` config tables."""
    from ingest import create_app
    from ingest.logs import configure
    from ingest.providers import PROVIDERS
    from mailpulse.config import parse_config

    document = {
        "data_dir": os.environ[DATA_DIR_ENV],
        "sources": {SOURCE: {"provider": "generic", "secret": os.environ[SECRET_ENV]}},
        **extra,
    }
    configure()  # as ``python -m ingest.intake.server`` does
    return create_app(parse_config(document, origin="bench", env={}, providers=PROVIDERS))


def verified() -> Flask:
    """Diagnostic: the real receiver (routing, checks, HMAC, the spool record and its framing)
    whose spool keeps nothing. Against the no-op it prices the request handling alone."""
    import dataclasses

    app = full()
    state = app.extensions["mailpulse"]
    app.extensions["mailpulse"] = dataclasses.replace(state, spool=_FramesOnly(state.spool))
    return app


def unsynced() -> Flask:
    """Diagnostic: the real receiver and spool, group commit included, with the device sync
    left out (``synchronous=OFF``: commits reach the page cache only). Against the full path
    it prices the sync."""
    import dataclasses

    app = full()
    state = app.extensions["mailpulse"]
    spool = state.spool
    unsynced = _UnsyncedSpool(spool.path, max_bytes=spool.max_bytes, retry_after=spool.retry_after)
    app.extensions["mailpulse"] = dataclasses.replace(state, spool=unsynced)
    return app


class _UnsyncedSpool(SqliteSpool):
    """The SQLite spool with its commits not synced."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._appender = Connection(self.path, synchronous="OFF", busy_timeout=0)


class _FramesOnly:
    """A spool that encodes each record, as the real one does, then drops it."""

    def __init__(self, spool: Any) -> None:
        self._spool = spool

    def append(self, record: Any) -> None:
        record.header()

    def check_writable(self) -> str | None:
        return self._spool.check_writable()  # type: ignore[no-any-return]

    def pending_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self._spool.close()
