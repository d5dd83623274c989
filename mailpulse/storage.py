"""Where the lake's files live: a local directory or a prefix on object storage.

One small interface over pyarrow's filesystems (``pyarrow.fs``), so the flusher, compaction,
the rollup and every reader handle a local lake and an ``s3://bucket/prefix`` one the same
way. Paths are the filesystem's own strings (an absolute path locally, ``bucket/key`` on S3);
:meth:`LakeStore.uri` turns one into what DuckDB and Spark read.

Writes never show a partial file: locally a file is written under a hidden temporary name,
fsync'd and renamed, then its folder fsync'd (:func:`atomic_path`, which local state files
use too); on object storage an object appears whole when its upload completes (a single PUT,
or a multipart upload that is completed only after every part arrived). Names carry a batch
number and a random tag, so two writers never pick the same one.
"""

from __future__ import annotations

import io
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mailpulse.errors import ConfigError, LakeUnreachable

if TYPE_CHECKING:
    import duckdb

    from mailpulse.config import LakeConfig

#: URL schemes of object stores pyarrow's filesystems reach (``gs``/``abfs`` with their own
#: default credentials; only ``s3`` takes the explicit settings of ``[lake]``).
OBJECT_SCHEMES = frozenset({"s3", "gs", "gcs", "abfs", "abfss", "az"})


@dataclass(frozen=True)
class StoredFile:
    """One file of the lake: its path in the store and when it was last written."""

    path: str
    mtime: float


class LakeStore:
    """The lake's root on one filesystem; every method takes and returns store paths."""

    def __init__(self, fs: pafs.FileSystem, root: str, *, scheme: str = "") -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.scheme = scheme  # "" for a local directory

    @classmethod
    def local(cls, directory: Path) -> LakeStore:
        """A lake in a local directory."""
        return cls(pafs.LocalFileSystem(), str(directory.absolute()))

    @property
    def is_local(self) -> bool:
        """True for a local directory, False for object storage."""
        return not self.scheme

    @property
    def location(self) -> str:
        """The root as a user writes it (``/srv/lake`` or ``s3://bucket/prefix``)."""
        return self.uri(self.root)

    def path(self, *parts: str) -> str:
        """A path under the root."""
        return "/".join([self.root.rstrip("/"), *parts])

    def relative(self, path: str) -> str:
        """``path`` relative to the root."""
        return path.removeprefix(self.root.rstrip("/") + "/")

    def uri(self, path: str) -> str:
        """What DuckDB, polars and Spark read: the local path, or ``scheme://bucket/key``."""
        return f"{self.scheme}://{path}" if self.scheme else path

    def check_reachable(self) -> None:
        """Raise :class:`LakeUnreachable` when an object store's bucket is not there (listing
        a missing bucket gives nothing, which would read as an empty lake)."""
        if self.is_local:
            return
        bucket = self.root.split("/", 1)[0]
        with self._failing("reach", bucket):
            found = self.fs.get_file_info(bucket)
        if found.type == pafs.FileType.NotFound:
            raise LakeUnreachable(f"cannot reach {self.uri(bucket)}: there is no such bucket")

    # -- reading

    def files(self, prefix: str, suffix: str = ".parquet") -> list[StoredFile]:
        """Every visible file under ``prefix`` whose name ends with ``suffix``, in path order.

        Hidden names (a local write's temporary file) are left out.
        """
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        with self._failing("list", prefix):
            infos = self.fs.get_file_info(selector)
        found = [
            StoredFile(info.path, info.mtime.timestamp() if info.mtime else 0.0)
            for info in infos
            if info.type == pafs.FileType.File
            and info.base_name.endswith(suffix)
            and not info.base_name.startswith(".")
        ]
        return sorted(found, key=lambda stored: stored.path)

    def exists(self, path: str) -> bool:
        """Whether a file is at ``path``."""
        with self._failing("look for", path):
            return bool(self.fs.get_file_info(path).type == pafs.FileType.File)

    def read_bytes(self, path: str) -> bytes:
        """A whole file (``FileNotFoundError`` when there is none)."""
        with self._failing("read", path), self.fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    def read_parquet(self, paths: list[str], columns: list[str] | None = None) -> pl.DataFrame:
        """Parquet files as one frame (columns in the first file's schema)."""
        with self._failing("read", paths[0] if paths else self.root):
            dataset = pads.dataset(paths, filesystem=self.fs, format="parquet")
            frame = pl.from_arrow(dataset.to_table(columns=columns))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def count_rows(self, paths: list[str]) -> int:
        """Rows in Parquet files, from their footers alone."""
        total = 0
        for path in paths:
            with self._failing("read", path), self.fs.open_input_file(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        return total

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let a DuckDB connection read this store's URIs (object storage goes through fsspec:
        DuckDB's own S3 extension cannot be assumed to be installed)."""
        if self.is_local:
            return
        from mailpulse.storage_fsspec import filesystem_for_duckdb

        wrapper = filesystem_for_duckdb(self.fs)
        names = wrapper.protocol if isinstance(wrapper.protocol, tuple) else (wrapper.protocol,)
        if not set(names) & set(con.list_filesystems()):
            con.register_filesystem(wrapper)

    # -- writing

    def write_parquet(
        self, frame: pl.DataFrame, path: str, *, sync_directory: bool = False
    ) -> None:
        """Write ``frame`` as Parquet so that ``path`` shows either nothing or the whole file."""
        with self.writing(path, sync_directory=sync_directory) as target:
            frame.write_parquet(target, compression="zstd", statistics=True)

    def write_bytes(self, path: str, data: bytes, *, sync_directory: bool = True) -> None:
        """Write ``data`` so that ``path`` shows either its old contents or all of ``data``."""
        with self.writing(path, sync_directory=sync_directory) as target:
            target.write(data)

    @contextmanager
    def writing(self, path: str, *, sync_directory: bool = True) -> Iterator[Any]:
        """A binary file object to write; afterwards the whole file appears at ``path``.

        Locally it is a hidden temporary sibling, fsync'd and renamed (``sync_directory=False``
        leaves the folder's fsync to :meth:`sync_folders`, once for many files); on object
        storage it is a memory buffer uploaded in one go when the block ends without an error.
        """
        if self.is_local:
            with (
                atomic_path(Path(path), sync_directory=sync_directory) as temporary,
                open(temporary, "wb") as handle,
            ):
                yield handle
            return
        buffer = io.BytesIO()
        yield buffer
        # One write: a multipart upload is completed only after every part arrived.
        with self._failing("write", path), self.fs.open_output_stream(path) as stream:
            stream.write(buffer.getbuffer())

    def sync_folders(self, paths: Iterable[str]) -> None:
        """Make local renames durable (object storage needs nothing)."""
        if self.is_local:
            fsync_directories(Path(path) for path in paths)

    def remove(self, paths: Iterable[str]) -> None:
        """Delete files (and a local write's temporary twin) that may or may not exist."""
        for path in paths:
            if self.is_local:
                local = Path(path)
                local.unlink(missing_ok=True)
                local.with_name(f".{local.name}.tmp").unlink(missing_ok=True)
                continue
            with suppress(FileNotFoundError), self._failing("delete", path):
                self.fs.delete_file(path)

    def remove_uris(self, uris: Iterable[str]) -> list[str]:
        """Delete files named by :meth:`uri` (a journal's record); those outside this store
        (a lake moved to another ``url`` since) are left alone and returned."""
        prefix = self.uri(self.root.rstrip("/")) + "/"
        mine = [uri for uri in uris if uri.startswith(prefix)]
        self.remove(self.path(uri.removeprefix(prefix)) for uri in mine)
        return [uri for uri in uris if not uri.startswith(prefix)]

    @contextmanager
    def _failing(self, action: str, path: str) -> Iterator[None]:
        """Storage failures as :class:`LakeUnreachable` (a missing file stays
        ``FileNotFoundError``: callers decide what absence means)."""
        try:
            yield
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise LakeUnreachable(f"cannot {action} {self.uri(path)}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LakeStore({self.location!r})"


@contextmanager
def atomic_path(path: Path, *, sync_directory: bool = True) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; afterwards the whole file appears at ``path``.

    The temporary file is fsync'd and renamed over ``path``, and then the folder is fsync'd so
    the rename survives a crash. Writers of many files pass ``sync_directory=False`` and call
    :func:`fsync_directories` once for all of them. On an error the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if sync_directory:
        fsync_directories([path])


def fsync_file(path: Path) -> None:
    """Make a written file's contents durable before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directories(paths: Iterable[Path]) -> None:
    """Make renames durable: fsync each distinct parent folder once."""
    for directory in sorted({p.parent for p in paths}):
        if not directory.exists():
            continue
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_store(lake: LakeConfig, default_dir: Path) -> LakeStore:
    """The store ``[lake]`` names: ``url`` (a local directory or an object-store URL), or
    ``default_dir`` when it is empty. Raises :class:`ConfigError` for a URL it cannot use."""
    url = lake.url
    if not url:
        return LakeStore.local(default_dir)
    scheme = urllib.parse.urlsplit(url).scheme
    if not scheme:
        return LakeStore.local(Path(url))
    if scheme == "s3":
        bucket_and_prefix = url.removeprefix("s3://").strip("/")
        return LakeStore(_s3(lake), bucket_and_prefix, scheme="s3")
    try:
        fs, root = pafs.FileSystem.from_uri(url)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError([f"lake.url: cannot open {scheme}:// storage: {exc}"]) from exc
    return LakeStore(fs, root, scheme=fs.type_name)


def _s3(lake: LakeConfig) -> pafs.S3FileSystem:
    """An S3 client: explicit keys when ``[lake]`` gives them, else the AWS credential chain;
    ``endpoint_url`` (or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``) for S3-compatible
    stores."""
    options: dict[str, Any] = {}
    if lake.access_key_id is not None and lake.secret_access_key is not None:
        options["access_key"] = lake.access_key_id.reveal()
        options["secret_key"] = lake.secret_access_key.reveal()
        if lake.session_token is not None:
            options["session_token"] = lake.session_token.reveal()
    endpoint = (
        lake.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3", "")
        or os.environ.get("AWS_ENDPOINT_URL", "")
    )
    if endpoint:
        parts = urllib.parse.urlsplit(endpoint)
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "https"
    region = lake.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region or endpoint:
        options["region"] = region or "us-east-1"
    return pafs.S3FileSystem(**options)
