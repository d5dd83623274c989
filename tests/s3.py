"""A real S3-compatible server for the tests: moto's standalone server on loopback.

moto implements S3's REST API (signatures, multipart uploads, listing) in one process; the
lake reaches it through pyarrow's S3 client exactly as it would reach AWS or MinIO, with an
``endpoint_url``. Each test gets a bucket of its own and keys the test generates.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from mailpulse.demo import free_port

REGION = "us-east-1"


@dataclass
class S3Server:
    """A running server; :meth:`new_bucket` gives a test its own bucket."""

    endpoint: str
    key_id: str = field(default_factory=lambda: "AKID" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30), repr=False)

    def filesystem(self) -> pafs.S3FileSystem:
        """A client of this server with the test's keys."""
        host = self.endpoint.removeprefix("http://")
        return pafs.S3FileSystem(
            access_key=self.key_id,
            secret_key=self.secret_key,
            endpoint_override=host,
            scheme="http",
            region=REGION,
            allow_bucket_creation=True,
        )

    def new_bucket(self) -> str:
        """An empty bucket no other test uses."""
        name = f"lake-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return name

    def objects(self, prefix: str) -> list[str]:
        """Keys under ``bucket/prefix``."""
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        infos = self.filesystem().get_file_info(selector)
        return sorted(info.path for info in infos if info.type == pafs.FileType.File)

    def lake_table(self, url: str) -> str:
        """The ``[lake]`` table of a mailpulse.toml keeping the lake at ``url`` here."""
        return (
            f"[lake]\nurl = {url!r}\nendpoint_url = {self.endpoint!r}\n"
            f"access_key_id = {self.key_id!r}\nsecret_access_key = {self.secret_key!r}\n"
        )


@contextlib.contextmanager
def server() -> Iterator[S3Server]:
    """Start moto's server on a free loopback port; stop it afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
