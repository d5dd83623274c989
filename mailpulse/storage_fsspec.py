"""pyarrow's filesystems handed to DuckDB through fsspec, with reads that threads can share.

DuckDB reads one open file from several threads at once, each with a ``seek`` then a
``read``. fsspec's ``ArrowFileWrapper`` files keep one position per file, so two threads
interleaving their pairs read each other's offsets and DuckDB gets the wrong bytes (a
Parquet footer that does not parse, a short read). Here every thread keeps its own position
and reads with pyarrow's positional ``read_at``, which shares nothing; and a file removed
since it was listed reads as missing (``FileNotFoundError``), not as a file without a time.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

import pyarrow.fs as pafs
from fsspec.implementations.arrow import ArrowFile, ArrowFSWrapper


class _PositionalFile(ArrowFile):  # type: ignore[misc]
    """A read-only file whose position belongs to the thread that moved it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._where = threading.local()

    def _position(self) -> int:
        return int(getattr(self._where, "position", 0))

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move this thread's position (``whence`` as in :func:`io.IOBase.seek`)."""
        base = {0: 0, 1: self._position(), 2: self.stream.size()}[whence]
        self._where.position = base + offset
        return int(self._where.position)

    def tell(self) -> int:
        """This thread's position."""
        return self._position()

    def read(self, length: int = -1) -> bytes:
        """``length`` bytes (all that is left for -1) from this thread's position."""
        position = self._position()
        if length is None or length < 0:
            length = self.stream.size() - position
        data = bytes(self.stream.read_at(length, position))
        self._where.position = position + len(data)
        return data


class _SharedReadsWrapper(ArrowFSWrapper):  # type: ignore[misc]
    """ArrowFSWrapper whose seekable read-only files are :class:`_PositionalFile`."""

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        seekable: bool = True,
        **kwargs: Any,
    ) -> Any:
        if mode == "rb" and seekable:
            stream = self.fs.open_input_file(path)
            return _PositionalFile(self, stream, path, mode, block_size, **kwargs)
        return super()._open(path, mode, block_size, seekable, **kwargs)

    def modified(self, path: str) -> Any:
        """When the file was written; ``FileNotFoundError`` once it is gone (a compaction
        removed it after the listing), which readers take as a cue to list again."""
        found = self.fs.get_file_info(self._strip_protocol(path))
        if found.type == pafs.FileType.NotFound:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return found.mtime


def filesystem_for_duckdb(fs: pafs.FileSystem) -> Any:
    """An fsspec filesystem over ``fs`` for ``DuckDBPyConnection.register_filesystem``."""
    return _SharedReadsWrapper(fs)
