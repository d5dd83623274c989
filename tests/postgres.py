"""A real PostgreSQL server for the tests: Debian's binaries, a fresh cluster on loopback.

``initdb`` refuses to run as root, so when the tests run as root (CI) the cluster belongs to
the ``postgres`` user the Debian package creates, and every server command runs through
``runuser``. The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port
and trusts local connections (the tests connect as the superuser ``mailpulse``); each test
gets a database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailpulse.demo import free_port

USER = "mailpulse"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


@dataclass
class Cluster:
    """A running PostgreSQL cluster started for the tests."""

    directory: Path
    port: int
    bin_dir: Path

    def url(self, database: str = "postgres") -> str:
        """A connection URL for ``database``."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no checkpoint)."""
        self._ctl("stop", "-m", mode)

    def start(self) -> None:
        """Start it (again) and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.directory} -c max_connections=200 "
            "-c shared_buffers=32MB"
        )
        self._ctl("start", "-w", "-t", "60", "-o", options, "-l", str(self.directory / "log"))

    def _ctl(self, *args: str) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), *args]
        subprocess.run(_as_owner(command), check=True, capture_output=True, timeout=120)


def _as_owner(command: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root (initdb and postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a fresh cluster; stop it and remove its files afterwards."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: run `make system-deps`")
    directory = Path(tempfile.mkdtemp(prefix="mailpulse-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    initdb = [str(bin_dir / "initdb"), "-D", str(directory / "data"), "-U", USER]
    initdb += ["--auth=trust", "--encoding=UTF8", "--no-instructions"]
    subprocess.run(_as_owner(initdb), check=True, capture_output=True, timeout=120)
    server = Cluster(directory, free_port(), bin_dir)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
