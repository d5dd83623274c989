"""The shared spool engine on a real PostgreSQL: what only several receivers can break.

The contract every engine keeps is in ``tests/test_spool.py`` (run on both); here, receivers
on "several hosts" (several engine objects, each with its own connections) append at once
while a flusher follows by position, and the database goes away and comes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from ingest.errors import SpoolUnavailable
from ingest.spool import SpoolRecord, new_request_id
from ingest.spool.postgres import PostgresSpool
from tests import postgres


def record(host: int, n: int) -> SpoolRecord:
    return SpoolRecord(
        request_id=new_request_id(),
        source="s",
        received_at=host * 1_000_000 + n,
        remote_addr="::1",
        method="POST",
        url="/webhooks/s",
        content_type="application/json",
        headers={},
        body=b'{"n": %d}' % n,
    )


def test_a_reader_following_by_position_misses_nothing_several_hosts_append(
    pg_url: str,
) -> None:
    hosts = [PostgresSpool(pg_url, max_bytes=1 << 40) for _ in range(3)]
    flusher = PostgresSpool(pg_url, max_bytes=1 << 40)
    per_thread, threads_per_host = 60, 8
    done = threading.Event()
    seen: list[int] = []

    def receive(host: int, thread: int) -> None:
        for n in range(per_thread):
            hosts[host].append(record(host, thread * 1000 + n))

    def follow() -> None:
        # A flusher that acknowledges what it claimed: a record committed late behind a
        # higher id would be skipped by "after" and deleted by the acknowledgement.
        position = 0
        while True:
            last_round = done.is_set()
            claim = flusher.claim(1 << 30, 50, after=position)
            seen.extend(r.received_at for r in claim.records)
            if claim.records:
                position = claim.position
                flusher.acknowledge(position)
            elif last_round:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    workers = [
        threading.Thread(target=receive, args=(host, thread))
        for host in range(len(hosts))
        for thread in range(threads_per_host)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    follower.join(timeout=60)

    expected = {
        host * 1_000_000 + thread * 1000 + n
        for host in range(len(hosts))
        for thread in range(threads_per_host)
        for n in range(per_thread)
    }
    assert len(seen) == len(expected), "a record was skipped or read twice"
    assert set(seen) == expected
    assert flusher.pending_bytes() == 0
    for engine in [*hosts, flusher]:
        engine.close()


@pytest.fixture
def own_cluster() -> Iterator[postgres.Cluster]:
    """A server of this test's own, which it stops and starts."""
    with postgres.cluster() as running:
        yield running


def test_a_database_that_goes_away_is_spool_unavailable_and_used_again_when_back(
    own_cluster: postgres.Cluster,
) -> None:
    url = own_cluster.new_database()
    spool = PostgresSpool(url, max_bytes=1 << 30, retry_after=7)
    spool.append(record(0, 1))
    assert spool.check_writable() is None

    own_cluster.stop()
    with pytest.raises(SpoolUnavailable) as refused:
        spool.append(record(0, 2))
    assert "cannot be reached" in str(refused.value) or "shutting down" in str(refused.value)
    assert refused.value.retry_after == 7
    assert "127.0.0.1" not in str(refused.value)  # the URL (and its password) stays out
    assert spool.check_writable() is not None

    own_cluster.start()
    spool.append(record(0, 3))  # the same object: it reconnects on its own
    assert spool.check_writable() is None
    assert [r.received_at for r in spool.claim(1 << 20, 10).records] == [1, 3]
    spool.close()


def test_the_first_append_after_the_server_ended_the_connection_succeeds(pg_url: str) -> None:
    """A restart, a pooler or an idle timeout ends the connection between two appends: the next
    append begins on a new one instead of failing (nothing of it had reached the server)."""
    spool = PostgresSpool(pg_url, max_bytes=1 << 30)
    spool.append(record(0, 1))
    others = (
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ended = admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS o").fetchall()
        assert ended and all(row[0] for row in ended)
        deadline = time.monotonic() + 10
        while admin.execute(others).fetchall():  # the backends exit when they see the signal
            assert time.monotonic() < deadline, "the spool's connections outlived termination"
            time.sleep(0.05)

    spool.append(record(0, 2))

    assert [r.received_at for r in spool.claim(1 << 20, 10).records] == [1, 2]
    spool.close()
