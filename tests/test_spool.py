"""The spool: group commit from many threads, torn tails, corruption, sealing, quota."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ingest.errors import SpoolUnavailable
from ingest.segments import data_end, is_sealed, list_segments, read_segment
from ingest.spool import (
    GROW_BATCH_BYTES,
    PREALLOCATE_BYTES,
    Spool,
    SpoolRecord,
    new_request_id,
    spool_usage,
)
from tests.syncs import SyncSpy


def record(n: int, size: int = 100) -> SpoolRecord:
    return SpoolRecord(
        request_id=new_request_id(),
        source="s",
        received_at=n,
        remote_addr="::1",
        method="POST",
        url="http://x/webhooks/s",
        content_type="application/json",
        headers={"x-n": str(n)},
        body=b"%d:" % n + b"x" * size,
    )


def read_all(directory: Path) -> list[SpoolRecord]:
    found: list[SpoolRecord] = []
    for path in list_segments(directory):
        found += read_segment(path, 0, 1 << 30).records
    return found


def test_many_threads_share_fsyncs_and_every_record_arrives_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    spy = SyncSpy(monkeypatch)
    threads = [
        threading.Thread(
            target=lambda t=t: [spool.append(record(t * 1000 + i)) for i in range(200)]
        )
        for t in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spool.close()
    records = read_all(tmp_path)
    assert sorted(r.received_at for r in records) == sorted(
        t * 1000 + i for t in range(16) for i in range(200)
    )
    assert all(r.body.startswith(b"%d:" % r.received_at) for r in records)
    assert 0 < spy.syncs < 3200, "every append synced alone: group commit is not grouping"


def test_a_small_batch_is_written_and_synced_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RWF_DSYNC: the write itself is the sync (no separate ``fdatasync``), and what it wrote
    is on disk whole."""
    if not hasattr(os, "RWF_DSYNC"):
        pytest.skip("pwritev flags are Linux-only")
    spool = Spool(tmp_path, max_bytes=1 << 30)
    spool.append(record(0))  # opens and preallocates the segment (its own fsync)
    spy = SyncSpy(monkeypatch)
    spool.append(record(1))
    spool.close()
    assert spy.calls == ["pwritev+dsync"]
    assert sorted(r.received_at for r in read_all(tmp_path)) == [0, 1]


def test_a_torn_tail_is_not_read_and_a_sealed_segment_is_detected(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    for n in range(3):
        spool.append(record(n))
    (segment,) = list_segments(tmp_path)
    assert not is_sealed(segment)  # the writer still holds it
    spool.close()
    assert is_sealed(segment)
    end = data_end(segment, 0)
    assert end == 3 * len(record(0).encode())
    assert segment.stat().st_size > end  # preallocated zeros follow the records
    clean = read_segment(segment, 0, 1 << 30)
    assert ([r.received_at for r in clean.records], clean.at_end) == ([0, 1, 2], True)

    torn = record(99).encode()[:-10]  # a writer killed mid-write, into the zeros
    with open(segment, "r+b") as handle:
        handle.seek(end)
        handle.write(torn)
    read = read_segment(segment, 0, 1 << 30)
    assert [r.received_at for r in read.records] == [0, 1, 2]
    assert (read.end_offset, read.corrupt_at) == (end, end)  # never acknowledged: skipped


def test_a_record_cut_by_the_end_of_the_file_is_waited_for(tmp_path: Path) -> None:
    """Without zeros after it, a partial record is one still being written."""
    segment = tmp_path / "0001-1-abcdef01.seg"
    whole = record(1).encode()
    segment.write_bytes(whole + record(2).encode()[:30])
    read = read_segment(segment, 0, 1 << 20)
    assert [r.received_at for r in read.records] == [1]
    assert (read.end_offset, read.at_end, read.corrupt_at) == (len(whole), False, None)


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    for n in range(3):
        spool.append(record(n))
    spool.close()
    (segment,) = list_segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second = len(record(0).encode())
    data[second + 40] ^= 0xFF
    segment.write_bytes(bytes(data))
    read = read_segment(segment, 0, 1 << 20)
    assert [r.received_at for r in read.records] == [0]
    assert read.corrupt_at == second


def test_reading_resumes_from_an_offset(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    for n in range(5):
        spool.append(record(n))
    spool.close()
    (segment,) = list_segments(tmp_path)
    first = read_segment(segment, 0, len(record(0).encode()) * 2)
    assert [r.received_at for r in first.records] == [0, 1]
    rest = read_segment(segment, first.end_offset, 1 << 20)
    assert [r.received_at for r in rest.records] == [2, 3, 4]


def test_quota_refuses_instead_of_filling_the_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2000)
    accepted = 0
    with pytest.raises(SpoolUnavailable, match="spool is full"):
        for n in range(100):
            spool.append(record(n))
            accepted += 1
    spool.close()
    assert 0 < accepted < 100
    records = read_all(tmp_path)
    assert len(records) == accepted
    assert sum(len(r.encode()) for r in records) <= 2000
    assert spool_usage(tmp_path) > 0


def test_a_failed_write_is_refused_and_never_written_after(tmp_path: Path) -> None:
    """ENOSPC from the disk: the append fails, the next one starts a fresh segment.

    /dev/full also refuses ``RWF_DSYNC`` (EOPNOTSUPP), so the message also shows the spool
    falling back to a plain write and a separate sync on a file that takes no write flags."""
    spool = Spool(tmp_path, max_bytes=1 << 30)
    spool.append(record(0))
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, spool._fd)  # the segment's descriptor now writes to a full device
    os.close(full)
    with pytest.raises(SpoolUnavailable, match="disk holding the spool is full"):
        spool.append(record(1))
    spool.append(record(2))
    spool.close()
    assert sorted(r.received_at for r in read_all(tmp_path)) == [0, 2]
    assert len(list_segments(tmp_path)) == 2


def test_a_forked_child_writes_its_own_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30)
    spool.append(record(1))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            spool.append(record(2))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    spool.append(record(3))
    spool.close()
    assert len(list_segments(tmp_path)) == 2
    assert sorted(r.received_at for r in read_all(tmp_path)) == [1, 2, 3]


def test_a_stuck_sync_fails_its_waiters_and_the_spool_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one sync hangs, the next batch times out with 503; afterwards appends succeed."""
    import ingest.spool as spool_module

    monkeypatch.setattr(spool_module, "_SYNC_WAIT_SECONDS", 0.2)
    spool = Spool(tmp_path, max_bytes=1 << 30)
    spool.append(record(0))
    spy = SyncSpy(monkeypatch)
    spy.hold = threading.Event()
    stuck = threading.Thread(target=spool.append, args=(record(1),))
    stuck.start()
    time.sleep(0.05)  # the first append now holds the write lock, syncing
    with pytest.raises(SpoolUnavailable, match="did not sync in time"):
        spool.append(record(2))
    spy.hold.set()
    stuck.join()
    spy.hold = None
    spool.append(record(3))  # a fresh batch: not the failed one
    spool.close()
    assert sorted(r.received_at for r in read_all(tmp_path)) == [0, 1, 3]


def test_large_batches_grow_the_file_and_small_ones_still_find_zeros_after(
    tmp_path: Path,
) -> None:
    """Big bodies (SendGrid's 1,000-event batches) are appended past the preallocated zeros;
    every record, big or small, in any order, reads back whole and the data ends where the
    records end."""
    spool = Spool(tmp_path, max_bytes=1 << 32)
    sizes = [GROW_BATCH_BYTES + 10, 100, 3 * PREALLOCATE_BYTES, 50, GROW_BATCH_BYTES * 2, 10]
    for n, size in enumerate(sizes):
        spool.append(record(n, size))
    threads = [
        threading.Thread(target=lambda t=t: spool.append(record(100 + t, 400_000)))
        for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spool.append(record(200, 10))
    spool.close()
    records = read_all(tmp_path)
    assert sorted(r.received_at for r in records) == [*range(len(sizes)), *range(100, 108), 200]
    expected = {n: size for n, size in enumerate(sizes)} | {100 + t: 400_000 for t in range(8)}
    expected[200] = 10
    for r in records:
        assert r.body == b"%d:" % r.received_at + b"x" * expected[r.received_at]
    (segment,) = list_segments(tmp_path)
    total = sum(len(r.encode()) for r in records)
    assert data_end(segment, 0) == total
