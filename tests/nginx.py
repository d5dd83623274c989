"""Debian's nginx, run by the tests in front of real receivers with a site config of ours.

The site config is one of ``deploy/``'s examples with test ports and certificates put in;
here it is wrapped in a minimal ``nginx.conf`` of its own directory (pid, temp paths, logs)
and nginx runs in the foreground until the test is done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def main_config(directory: Path, site: Path) -> Path:
    """An ``nginx.conf`` in ``directory`` that serves ``site`` and keeps its files there."""
    temps = [
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    main = directory / "nginx.conf"
    main.write_text(
        "\n".join(
            [
                "user root;" if os.geteuid() == 0 else "",  # workers read the test's 0700 dirs
                "worker_processes 1;",
                f"pid {directory / 'nginx.pid'};",
                "events { worker_connections 512; }",
                "http {",
                f"    access_log {directory / 'access.log'};",
                *temps,
                f"    include {site};",
                "}",
            ]
        )
    )
    return main


@contextmanager
def running(directory: Path, site: Path, url: str, ca_file: str) -> Iterator[None]:
    """nginx serving ``site``, once ``url``/readyz answers 200 through it; stopped after."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )
    assert nginx, "nginx is missing: run scripts/system-deps.sh (make test does)"
    error_log = directory / "error.log"
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-c", str(main_config(directory, site))]
        + ["-e", str(error_log), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, error_log.read_text(errors="replace")
            try:
                if requests.get(f"{url}/readyz", verify=ca_file, timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, error_log.read_text(errors="replace")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)
