"""The spool as a durable queue: group commit, claim and acknowledge, quota, failures, kill -9."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.errors import SpoolUnavailable
from ingest.spool import Spool, SpoolRecord, new_request_id
from ingest.spool import sqlite as engine
from ingest.spool.connection import Connection
from ingest.spool.postgres import PostgresSpool
from ingest.spool.sqlite import SqliteSpool
from tests.helpers import REPO, append_all


def record(n: int, size: int = 100) -> SpoolRecord:
    return SpoolRecord(
        request_id=new_request_id(),
        source="s",
        received_at=n,
        remote_addr="::1",
        method="POST",
        url="/webhooks/s",
        content_type="application/json",
        headers={"x-n": str(n)},
        body=b"%d:" % n + b"x" * size,
    )


def test_a_record_survives_pickling_whole() -> None:
    """Records travel to the flusher's workers pickled; every field must come back."""
    original = record(7)
    copy = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy == original
    assert copy.header() == original.header() and copy.body == original.body


def size_of(item: SpoolRecord) -> int:
    return len(item.header()) + len(item.body)


@pytest.fixture
def spool(tmp_path: Path) -> SqliteSpool:
    return SqliteSpool(tmp_path / "spool" / "spool.sqlite", max_bytes=1 << 30)


@pytest.fixture(params=["local", "postgres"])
def any_spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Spool]:
    """Each engine in turn, behind the one interface."""
    if request.param == "local":
        engine: Spool = SqliteSpool(tmp_path / "spool" / "spool.sqlite", max_bytes=1 << 30)
    else:
        engine = PostgresSpool(request.getfixturevalue("pg_url"), max_bytes=1 << 30)
    yield engine
    engine.close()


def test_concurrent_appends_share_commits_and_every_record_arrives_whole(
    spool: SqliteSpool,
) -> None:
    records = [record(n, size=n * 7) for n in range(400)]
    append_all(spool, records, threads=32)
    assert spool.commits < len(records)
    claimed = spool.claim(1 << 30, 1000)
    assert sorted(claimed.records, key=lambda r: r.received_at) == records
    assert claimed.size == spool.pending_bytes() == sum(map(size_of, records))


def test_an_append_waits_out_another_processs_write_and_then_commits(
    spool: SqliteSpool,
) -> None:
    spool.append(record(0))
    other = sqlite3.connect(spool.path, isolation_level=None)  # the flusher, say
    other.execute("BEGIN IMMEDIATE")
    appending = threading.Thread(target=spool.append, args=(record(1),))
    appending.start()
    appending.join(timeout=0.3)
    assert appending.is_alive()  # waiting for the lock, neither failed nor committed
    other.execute("COMMIT")
    other.close()
    appending.join(timeout=5)
    assert not appending.is_alive()
    assert [r.received_at for r in spool.claim(1 << 20, 10).records] == [0, 1]


def test_a_full_batch_is_committed_and_the_next_one_started(
    spool: SqliteSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "max_batch_rows", 3)
    spool.append(record(0))
    other = sqlite3.connect(spool.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # every append piles up behind this write
    records = [record(n) for n in range(1, 61)]
    appending = threading.Thread(target=append_all, args=(spool, records, 60))
    appending.start()
    appending.join(timeout=0.5)
    other.execute("COMMIT")
    other.close()
    appending.join(timeout=10)
    # Without the limit, everything that piled up would have been one batch.
    assert spool.commits >= 1 + 60 // 3
    assert len(spool.claim(1 << 30, 1000).records) == 61
    assert spool.pending_bytes() == sum(map(size_of, [record(0), *records]))


def test_a_spool_from_before_the_append_view_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "spool.sqlite"
    first = SqliteSpool(path, max_bytes=1 << 30)
    first.append(record(0, size=10))
    first.close()
    with sqlite3.connect(path) as db:  # as databases were made before appends used the view
        db.execute("DROP TRIGGER record_appends_insert")
        db.execute("DROP VIEW record_appends")
    db.close()
    again = SqliteSpool(path, max_bytes=1 << 30)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker writing while this one upgrades
    upgrading = threading.Thread(target=again.append, args=(record(1, size=20),))
    upgrading.start()
    upgrading.join(timeout=0.3)
    other.execute("COMMIT")
    other.close()
    upgrading.join(timeout=5)
    assert [r.received_at for r in again.claim(1 << 20, 10).records] == [0, 1]
    assert again.pending_bytes() == size_of(record(0, size=10)) + size_of(record(1, size=20))
    again.close()


def test_an_appending_connection_that_upgrades_a_spool_waits_for_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool" / "spool.sqlite"
    Connection(path, synchronous="FULL").get()  # creates it
    with sqlite3.connect(path) as db:  # as databases were made before appends used the view
        db.execute("DROP TRIGGER record_appends_insert")
        db.execute("DROP VIEW record_appends")
    db.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker writing while this one upgrades
    appender = Connection(path, synchronous="FULL", busy_timeout=0)
    opened: list[sqlite3.Connection] = []
    opening = threading.Thread(target=lambda: opened.append(appender.get()))
    opening.start()
    opening.join(timeout=0.3)
    other.execute("COMMIT")
    other.close()
    opening.join(timeout=5)
    assert opened, "opening failed instead of waiting"
    found = "SELECT count(*) FROM sqlite_master WHERE name = 'record_appends_insert'"
    assert opened[0].execute(found).fetchone()[0] == 1
    assert opened[0].execute("PRAGMA busy_timeout").fetchone()[0] == 0  # write_one waits itself
    appender.close()


def test_claims_take_the_oldest_first_within_their_budget(any_spool: Spool) -> None:
    for n in range(10):
        any_spool.append(record(n, size=1000))
    one = size_of(record(0, size=1000))
    assert [r.received_at for r in any_spool.claim(2 * one, 100).records] == [0, 1]
    assert [r.received_at for r in any_spool.claim(1 << 20, 3).records] == [0, 1, 2]
    # A first record larger than the budget still comes, alone: the queue always moves.
    assert [r.received_at for r in any_spool.claim(10, 100).records] == [0]


def test_a_claim_can_start_past_a_position_not_yet_acknowledged(any_spool: Spool) -> None:
    for n in range(6):
        any_spool.append(record(n))
    first = any_spool.claim(1 << 20, 4)
    following = any_spool.claim(1 << 20, 100, after=first.position)
    assert [r.received_at for r in following.records] == [4, 5]
    assert any_spool.pending_bytes() == first.size + following.size  # nothing acknowledged
    assert any_spool.claim(1 << 20, 100).records[0].received_at == 0


def test_acknowledging_forgets_what_was_claimed_and_nothing_else(any_spool: Spool) -> None:
    for n in range(6):
        any_spool.append(record(n))
    first = any_spool.claim(1 << 20, 4)
    any_spool.acknowledge(first.position)
    rest = any_spool.claim(1 << 20, 100)
    assert [r.received_at for r in rest.records] == [4, 5]
    assert rest.position > first.position
    assert any_spool.pending_bytes() == rest.size
    any_spool.acknowledge(first.position)  # again, or an older position: nothing changes
    any_spool.acknowledge(0)
    assert any_spool.claim(1 << 20, 100) == rest
    any_spool.acknowledge(rest.position)
    assert any_spool.pending_bytes() == 0
    assert any_spool.claim(1 << 20, 100).records == []


def test_a_claim_never_acknowledged_is_claimed_again_by_the_next_reader(
    spool: SqliteSpool,
) -> None:
    for n in range(3):
        spool.append(record(n))
    claimed = spool.claim(1 << 20, 100)
    spool.close()  # the flusher that held the claim is gone
    again = SqliteSpool(spool.path, max_bytes=1 << 30)
    assert again.claim(1 << 20, 100) == claimed


_APPEND_FOREVER = """
import sys, threading
from pathlib import Path
from ingest.spool import SpoolRecord, new_request_id
from ingest.spool.sqlite import SqliteSpool

spool = SqliteSpool(Path(sys.argv[1]), max_bytes=1 << 40)
lock = threading.Lock()

def keep_appending():
    while True:
        rid = new_request_id()
        spool.append(SpoolRecord(rid, "s", 0, "::1", "POST", "/", "a/b", {}, b"y" * 2000))
        with lock:
            print(rid, flush=True)

for _ in range(8):
    threading.Thread(target=keep_appending).start()
"""


def test_kill_9_mid_append_loses_nothing_acknowledged_and_leaves_no_torn_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool" / "spool.sqlite"
    with subprocess.Popen(
        [sys.executable, "-c", _APPEND_FOREVER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as writer:
        assert writer.stdout is not None
        acknowledged = [writer.stdout.readline().strip() for _ in range(300)]
        writer.send_signal(signal.SIGKILL)
        acknowledged += writer.stdout.read().split()
        writer.wait(timeout=10)
    spool = SqliteSpool(path, max_bytes=1 << 30)
    stored = spool.claim(1 << 40, 1 << 30).records
    assert set(acknowledged) <= {r.request_id for r in stored}
    assert {r.body for r in stored} == {b"y" * 2000}
    assert spool.pending_bytes() == sum(map(size_of, stored))


def test_the_quota_counts_what_is_waiting(any_spool: Spool) -> None:
    any_spool.max_bytes = 5 * size_of(record(0))
    for n in range(5):
        any_spool.append(record(n))
    with pytest.raises(SpoolUnavailable, match="full") as refused:
        any_spool.append(record(5))
    assert refused.value.retry_after > 0
    assert any_spool.check_writable() == "the spool is full"
    any_spool.acknowledge(any_spool.claim(1 << 20, 3).position)  # a flush frees room at once
    any_spool.append(record(5))
    any_spool.append(record(6))
    assert any_spool.check_writable() is None


def test_a_spool_that_cannot_be_written_raises_spool_unavailable_and_says_which_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "spool").write_text("a file where the spool directory should be")
    spool = SqliteSpool(tmp_path / "spool" / "spool.sqlite", max_bytes=1 << 30)
    caplog.set_level(logging.ERROR, logger="ingest.spool.sqlite")
    for action in (
        lambda: spool.append(record(1)),
        lambda: spool.claim(1 << 20, 10),
        lambda: spool.acknowledge(10),
        spool.pending_bytes,
    ):
        with pytest.raises(SpoolUnavailable):
            action()
    assert spool.check_writable() is not None
    logged = [r for r in caplog.records if r.getMessage().startswith("spool ")]
    assert logged and all(r.file == str(spool.path) and r.reason for r in logged)  # type: ignore[attr-defined]


def test_a_corrupt_database_is_spool_unavailable_not_a_database_error(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    path.write_bytes(b"not a database, " * 512)
    spool = SqliteSpool(path, max_bytes=1 << 30)
    with pytest.raises(SpoolUnavailable):
        spool.append(record(1))
    with pytest.raises(SpoolUnavailable):
        spool.claim(1 << 20, 10)


def test_a_spool_removed_under_a_running_writer_is_made_again_and_positions_keep_growing(
    spool: SqliteSpool,
) -> None:
    spool.append(record(1))
    before = spool.claim(1 << 20, 10).position
    shutil.rmtree(spool.path.parent)
    spool.append(record(2))  # into a new database, not the deleted file
    after = SqliteSpool(spool.path, max_bytes=1 << 30).claim(1 << 20, 10)
    assert [r.received_at for r in after.records] == [2]
    assert after.position > before  # a flusher's old position never covers new records


def test_a_writer_stuck_elsewhere_fails_the_waiters_and_the_spool_recovers(
    spool: SqliteSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.spool.group.COMMIT_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(engine, "COMMIT_WAIT_SECONDS", 0.5)
    monkeypatch.setattr("ingest.spool.connection.BUSY_TIMEOUT_SECONDS", 0.5)
    spool.append(record(0))
    # Another process's writer holding the write lock and never finishing its transaction.
    stuck = sqlite3.connect(spool.path, isolation_level=None)
    stuck.execute("BEGIN IMMEDIATE")
    failures: list[str] = []

    def append(n: int) -> None:
        try:
            spool.append(record(n))
        except SpoolUnavailable as error:
            failures.append(str(error))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(failures) == 8
    assert "the spool database stayed locked by another process" in failures  # the leader
    stuck.execute("ROLLBACK")  # the stuck writer gives up
    stuck.close()
    spool.append(record(9))
    assert [r.received_at for r in spool.claim(1 << 20, 100).records] == [0, 9]


def test_a_forked_child_opens_its_own_connection(any_spool: Spool) -> None:
    any_spool.append(record(1))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            any_spool.append(record(2))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    any_spool.append(record(3))
    assert sorted(r.received_at for r in any_spool.claim(1 << 20, 10).records) == [1, 2, 3]
