"""Large spool batches go to the disk with O_DIRECT (``ingest/direct_io.py``), on the real disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.direct_io import ALIGN, DirectWriter
from ingest.segments import data_end, list_segments
from ingest.spool import GROW_BATCH_BYTES, Spool
from tests.test_spool import read_all, record

needs_direct_io = pytest.mark.skipif(
    DirectWriter.open(Path(__file__)) is None, reason="this filesystem has no O_DIRECT"
)


def _segment(directory: Path) -> Path:
    (segment,) = list_segments(directory)
    return segment


@needs_direct_io
def test_a_large_batch_is_written_in_whole_blocks_and_reads_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 32)
    big = record(1, 300_000)
    spool.append(big)
    segment = _segment(tmp_path)
    # Written through the page cache, the file would end with the record; direct writes
    # cover whole blocks, the rest of the last one zeros.
    assert os.path.getsize(segment) % ALIGN == 0
    assert os.path.getsize(segment) > len(big.encode())
    assert data_end(segment, 0) == len(big.encode())
    spool.close()
    assert read_all(tmp_path) == [big]


@needs_direct_io
def test_records_sharing_a_block_with_a_direct_write_are_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 32)
    written = [record(1, 10), record(2, 300_000), record(3, 25), record(4, GROW_BATCH_BYTES)]
    for one in written:
        spool.append(one)
    spool.close()
    assert read_all(tmp_path) == written
    assert data_end(_segment(tmp_path), 0) == sum(len(one.encode()) for one in written)


@needs_direct_io
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(
        st.one_of(
            st.integers(0, 5_000), st.integers(GROW_BATCH_BYTES - 200, GROW_BATCH_BYTES + 70_000)
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_mix_of_small_and_large_records_reads_back_whole(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    directory = tmp_path_factory.mktemp("spool")
    spool = Spool(directory, max_bytes=1 << 32)
    written = [record(n, size) for n, size in enumerate(sizes)]
    for one in written:
        spool.append(one)
    spool.close()
    assert read_all(directory) == written
    assert data_end(_segment(directory), 0) == sum(len(one.encode()) for one in written)
