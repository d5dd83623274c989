"""The reading side of the spool: segments, sealing, and the records in them (the flusher's).

The writer (:mod:`ingest.spool`) appends framed records to one segment per worker process and
holds an exclusive ``flock`` on it while it writes; see that module for the record format. A
reader takes complete records up to the first torn, zero or unfinished one.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from ingest.spool import SpoolRecord
from ingest.spool.files import FRAME, MAGIC, SEGMENT_SUFFIX


def list_segments(directory: Path) -> list[Path]:
    """Segment files, oldest first."""
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX))
    except FileNotFoundError:
        return []


def is_sealed(path: Path) -> bool:
    """True when no live process writes this segment any more."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases the lock at once
    return True


@dataclass(frozen=True, slots=True)
class SegmentRead:
    """What one read of a segment found."""

    records: list[SpoolRecord]
    end_offset: int  # just past the last complete record read
    at_end: bool  # nothing follows: the end of the file, or preallocated zeros
    corrupt_at: int | None  # offset of a record that fails its checks, if any


_ZERO_MAGIC = bytes(4)


def read_segment(
    path: Path, offset: int, max_bytes: int, max_records: int | None = None
) -> SegmentRead:
    """Read complete records from ``offset``: about ``max_bytes`` and ``max_records`` at most.

    A first record larger than ``max_bytes`` is still read, alone, so a batch always moves on.
    In a segment still being written, an incomplete last record is simply not read yet.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        data = handle.read(max(0, min(size - offset, max_bytes)))
        if len(data) >= FRAME.size and offset + len(data) < size:
            magic, header_len, body_len, _crc = FRAME.unpack_from(data, 0)
            first = FRAME.size + header_len + body_len
            if magic == MAGIC and first > len(data):
                data += handle.read(min(size - offset, first) - len(data))
    whole_file = offset + len(data) == size
    view = memoryview(data)
    records: list[SpoolRecord] = []
    position = 0
    while max_records is None or len(records) < max_records:
        rest = len(data) - position
        head = data[position : position + 4]
        if head == _ZERO_MAGIC[: len(head)]:  # nothing left, or the preallocated zeros
            return SegmentRead(records, offset + position, whole_file or rest >= 4, None)
        if rest < FRAME.size:
            break  # a header still being written, or cut by the read budget
        magic, header_len, body_len, crc = FRAME.unpack_from(data, position)
        if magic != MAGIC:
            return SegmentRead(records, offset + position, False, offset + position)
        end = position + FRAME.size + header_len + body_len
        if end > len(data):
            break  # still being written, or cut by the read budget
        header = bytes(view[position + FRAME.size : position + FRAME.size + header_len])
        body = bytes(view[position + FRAME.size + header_len : end])
        if zlib.crc32(body, zlib.crc32(header)) != crc:
            return SegmentRead(records, offset + position, False, offset + position)
        records.append(SpoolRecord.decode(header, body))
        position = end
    return SegmentRead(records, offset + position, False, None)


def data_end(path: Path, offset: int) -> int:
    """Where the records of a segment end (its size, or where preallocated zeros start).

    Walks frame headers from ``offset`` without reading bodies; used for the pending-bytes
    gauge, not for reading records.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            position = offset
            while position + FRAME.size <= size:
                handle.seek(position)
                magic, header_len, body_len, _crc = FRAME.unpack(handle.read(FRAME.size))
                if magic != MAGIC:
                    break
                position += FRAME.size + header_len + body_len
            return min(position, size)
    except FileNotFoundError:
        return offset
