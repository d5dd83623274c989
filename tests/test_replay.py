"""Single-use tokens, shared by every worker through one SQLite file, or by every receiver on
every host through the PostgreSQL database of the ``postgres`` spool engine."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import pytest

from ingest.errors import SpoolUnavailable
from ingest.intake.replay import MemoryReplayGuard, SqliteReplayGuard
from ingest.intake.replay_postgres import PostgresReplayGuard
from ingest.providers.base import ReplayGuard
from mailpulse.demo import free_port


class FirstUseGuard(ReplayGuard, Protocol):
    def first_use(self, key: str, *, now: float, expires_at: float) -> bool: ...


def assert_single_use_until_expiry(guard: FirstUseGuard, other: FirstUseGuard) -> None:
    """``other`` shares ``guard``'s storage (another worker, or another host)."""
    assert guard.first_use("mg:abc", now=1000, expires_at=1300)
    assert not other.first_use("mg:abc", now=1100, expires_at=1400)
    assert not guard.first_use("mg:abc", now=1100, expires_at=1400)
    assert other.first_use("mg:other", now=1100, expires_at=1400)
    # Past its expiry a replay fails the timestamp check anyway; the row may be reused.
    assert other.first_use("mg:abc", now=1301, expires_at=1601)
    assert not guard.first_use("mg:abc", now=1500, expires_at=1800)
    # The receiver's path: seen while authenticating, remembered once the request is stored.
    assert not other.seen("sv:msg_1", now=1000)
    guard.remember("sv:msg_1", expires_at=1300)
    assert other.seen("sv:msg_1", now=1300) and not other.seen("sv:msg_1", now=1301)
    other.remember("sv:msg_1", expires_at=1200)  # an earlier expiry never shortens the window
    assert guard.seen("sv:msg_1", now=1250)


def test_a_token_is_accepted_once_until_it_expires(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    assert_single_use_until_expiry(SqliteReplayGuard(path), SqliteReplayGuard(path))


def test_receivers_sharing_postgres_refuse_each_others_tokens(pg_url: str) -> None:
    one, other = PostgresReplayGuard(pg_url), PostgresReplayGuard(pg_url)  # two hosts
    try:
        assert_single_use_until_expiry(one, other)
        assert len(one) == len(other) == 3
    finally:
        one.close()
        other.close()


def test_hosts_race_for_one_token_in_postgres_and_one_wins(pg_url: str) -> None:
    hosts = [PostgresReplayGuard(pg_url), PostgresReplayGuard(pg_url)]
    hosts[0].first_use("warm", now=0, expires_at=1)  # the table exists before the race

    def claim(n: int) -> bool:
        return hosts[n % 2].first_use("t", now=1, expires_at=9)

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(claim, range(32)))
        assert results.count(True) == 1
    finally:
        for host in hosts:
            host.close()


def _claim(path: str, key: str) -> bool:
    return SqliteReplayGuard(Path(path)).first_use(key, now=10, expires_at=20)


def test_processes_share_the_table(tmp_path: Path) -> None:
    path = str(tmp_path / "replay.sqlite")
    SqliteReplayGuard(Path(path)).first_use("warm", now=0, expires_at=1)  # create it once
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(_claim, [(path, "token")] * 8)
    assert sorted(results) == [False] * 7 + [True]


def test_threads_race_for_one_token_and_one_wins(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: guard.first_use("t", now=1, expires_at=9), range(32)))
    assert results.count(True) == 1


def test_expired_rows_are_pruned(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite")
    for n in range(3000):
        guard.first_use(f"k{n}", now=n, expires_at=n + 10)
    assert len(guard) < 1100  # pruned every 1024 inserts: only the recent window is kept


def test_memory_guard_is_bounded() -> None:
    guard = MemoryReplayGuard(max_entries=100)
    for n in range(1000):
        assert guard.first_use(f"k{n}", now=0, expires_at=10)
    assert len(guard._used) <= 100
    assert not guard.first_use("k999", now=1, expires_at=10)


def test_an_unreachable_postgres_guard_is_unavailable_without_telling_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = PostgresReplayGuard(f"postgresql://mp:hunter2-secret@127.0.0.1:{free_port()}/x")
    with caplog.at_level(logging.ERROR), pytest.raises(SpoolUnavailable):
        guard.seen("mg:abc", now=1000)
    told = [caplog.text, *(str(vars(r)) for r in caplog.records)]
    assert caplog.records and not any("hunter2" in text for text in told)
