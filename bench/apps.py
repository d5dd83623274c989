"""Gunicorn app factories for `bench/receive.py`: `bench.apps:noop()` and `bench.apps:full()`.

Gunicorn imports the app in its own processes, so the full receiver reads its data directory
and its (per-run, generated) secret from environment variables the benchmark sets for the
gunicorn subprocess. Nothing secret is ever written to disk or the command line.
"""

from __future__ import annotations

import os

from flask import Flask

DATA_DIR_ENV = "MAILPULSE_BENCH_DATA_DIR"
SECRET_ENV = "MAILPULSE_BENCH_SECRET"
SOURCE = "bench"


def noop() -> Flask:
    """The baseline: a no-op Flask endpoint (:mod:`bench.noop_app`)."""
    from bench.noop_app import create_app

    return create_app()


def full() -> Flask:
    """The real receiver: generic-provider HMAC check and the fsync'd spool."""
    from ingest import create_app
    from ingest.logs import configure
    from mailpulse.config import parse_config

    document = {
        "data_dir": os.environ[DATA_DIR_ENV],
        "sources": {SOURCE: {"provider": "generic", "secret": os.environ[SECRET_ENV]}},
    }
    configure()  # as ``python -m ingest.server`` does
    return create_app(parse_config(document, origin="bench", env={}))
