"""Reads of a lake on object storage that DuckDB's threads share stay correct.

DuckDB reads one open file from several threads, each with a seek then a read; the file
objects mailpulse hands it keep one position per thread. These tests read one object from
many threads at once through the filesystem DuckDB is given, and run a multi-threaded
DuckDB query over many files, against moto's S3 server.
"""

from __future__ import annotations

import os
import threading

import duckdb
import polars as pl
import pyarrow.fs as pafs
import pytest

from mailpulse.storage import LakeStore
from mailpulse.storage_fsspec import filesystem_for_duckdb
from tests.s3 import S3Server


def _store(s3_server: S3Server) -> LakeStore:
    return LakeStore(s3_server.filesystem(), f"{s3_server.new_bucket()}/lake", scheme="s3")


def test_threads_sharing_one_open_file_each_read_their_own_bytes(s3_server: S3Server) -> None:
    store = _store(s3_server)
    data = os.urandom(1 << 20)
    path = store.path("blob.bin")
    store.write_bytes(path, data)
    handle = filesystem_for_duckdb(store.fs).open(path, "rb")
    wrong: list[int] = []

    def read_slices(worker: int) -> None:
        for step in range(60):
            offset = ((worker * 7919 + step * 104_729) * 13) % (len(data) - 4096)
            handle.seek(offset)
            if handle.read(4096) != data[offset : offset + 4096] or handle.tell() != offset + 4096:
                wrong.append(offset)

    threads = [threading.Thread(target=read_slices, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
    handle.seek(-10, 2)
    assert handle.read() == data[-10:]


def test_a_multi_threaded_query_over_many_objects_reads_every_row(s3_server: S3Server) -> None:
    store = _store(s3_server)
    paths = []
    for n in range(24):
        frame = pl.DataFrame({"part": [n] * 50_000, "value": range(n * 50_000, (n + 1) * 50_000)})
        paths.append(store.path(f"part-{n:02d}.parquet"))
        store.write_parquet(frame, paths[-1])
    con = duckdb.connect()
    con.execute("SET threads = 8")
    store.attach(con)
    listing = ", ".join(f"'{store.uri(path)}'" for path in paths)
    expected = sum(range(24 * 50_000))
    for _ in range(5):
        ((count, total),) = con.sql(
            f"SELECT count(*), sum(value) FROM read_parquet([{listing}])"
        ).fetchall()
        assert (count, total) == (24 * 50_000, expected)


@pytest.mark.parametrize("whence", [0, 1, 2])
def test_seek_follows_io_semantics(s3_server: S3Server, whence: int) -> None:
    store = _store(s3_server)
    path = store.path("small.bin")
    store.write_bytes(path, bytes(range(100)))
    handle = filesystem_for_duckdb(store.fs).open(path, "rb")
    handle.seek(10)
    position = handle.seek({0: 20, 1: 5, 2: -30}[whence], whence)
    assert position == {0: 20, 1: 15, 2: 70}[whence]
    assert handle.read(3) == bytes(range(position, position + 3))
    assert isinstance(store.fs, pafs.S3FileSystem)
