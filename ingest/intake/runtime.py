"""What a running receiver holds: the config, one provider object per source, the spool."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse

from ingest.intake.ratelimit import SourceRateLimiter
from ingest.intake.replay import SqliteReplayGuard
from ingest.providers import PROVIDERS, Provider
from ingest.providers.base import ReplayGuard
from ingest.spool import Spool, open_spool
from mailpulse.config import Config, SourceConfig


@dataclass(frozen=True)
class SourceRuntime:
    """One configured source, ready to verify requests."""

    config: SourceConfig
    provider: Provider
    rate_limit: RateLimitItem | None
    retry_after: int


@dataclass(frozen=True)
class ReceiverState:
    """Everything a request handler needs, built once per app."""

    config: Config
    sources: Mapping[str, SourceRuntime]
    spool: Spool
    limiter: SourceRateLimiter
    clock: Callable[[], float]


def build_state(
    config: Config, clock: Callable[[], float] | None = None, workers: int = 1
) -> ReceiverState:
    """Instantiate providers, the spool and the rate limiter for ``config``.

    ``workers`` is how many processes serve the same sources: without a shared rate-limit
    storage each one enforces its share of every limit.
    """
    sources: dict[str, SourceRuntime] = {}
    # One guard for every source and worker: tokens are keyed by source inside providers.
    replay = open_replay_guard(config)
    for name, source in config.sources.items():
        limit = parse(source.rate_limit) if source.rate_limit else None
        retry_after = max(1, int(limit.get_expiry())) if limit else 1
        sources[name] = SourceRuntime(
            config=source,
            provider=PROVIDERS[source.provider](source, replay=replay),
            rate_limit=limit,
            retry_after=retry_after,
        )
    spool = open_spool(config)
    limiter = SourceRateLimiter(config.receiver.rate_limit_storage, workers)
    return ReceiverState(
        config=config, sources=sources, spool=spool, limiter=limiter, clock=clock or time.time
    )


def open_replay_guard(config: Config) -> ReplayGuard:
    """Where single-use values are remembered: next to the embedded spool, or in the shared
    PostgreSQL database, so a value acknowledged by one host is refused by every other."""
    if config.spool.engine == "postgres" and config.spool.url is not None:
        from ingest.intake.replay_postgres import PostgresReplayGuard

        return PostgresReplayGuard(config.spool.url.reveal())
    return SqliteReplayGuard(config.spool_dir / "replay.sqlite")
