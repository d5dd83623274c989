"""Single-use tokens, shared by every worker through one SQLite file."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ingest.intake.replay import MemoryReplayGuard, SqliteReplayGuard


def test_a_token_is_accepted_once_until_it_expires(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.sqlite")
    assert guard.first_use("mg:abc", now=1000, expires_at=1300)
    assert not guard.first_use("mg:abc", now=1100, expires_at=1400)
    assert guard.first_use("mg:other", now=1100, expires_at=1400)
    # Past its expiry a replay fails the timestamp check anyway; the row may be reused.
    assert guard.first_use("mg:abc", now=1301, expires_at=1601)


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
