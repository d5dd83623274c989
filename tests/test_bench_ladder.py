"""The receive benchmark's diagnostic sides: what each one keeps of the real receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask import Flask

from bench import apps, receive
from bench.receive import event_body, spooled_records
from tests.helpers import new_secret, signed_headers


def post_signed(app: Flask, secret: str, bodies: int = 5) -> None:
    """Post ``bodies`` signed events and a forged one."""
    client = app.test_client()
    for _ in range(bodies):
        body = event_body()
        answer = client.post(
            f"/webhooks/{apps.SOURCE}", data=body, headers=signed_headers(secret, body)
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
    wrong = client.post(
        f"/webhooks/{apps.SOURCE}",
        data=b"{}",
        headers={"Content-Type": "application/json", "X-Webhook-Timestamp": "1"},
    )
    assert wrong.status_code == 401  # still the real authentication


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_secret()
    monkeypatch.setenv(apps.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(apps.SECRET_ENV, value)
    return value


@pytest.mark.parametrize(
    ("factory", "records", "synchronous"),
    [(apps.full, 5, 2), (apps.unsynced, 5, 0), (apps.verified, 0, None)],
)
def test_each_side_keeps_what_it_says(
    factory: Any, records: int, synchronous: int | None, secret: str, tmp_path: Path
) -> None:
    app = factory()
    post_signed(app, secret)
    spool = app.extensions["mailpulse"].spool
    if synchronous is not None:  # SQLite's setting on the connection that commits appends
        writer = spool._appender.get()
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    spool.close()
    assert spooled_records(tmp_path / "spool") == records


def test_the_server_cpu_counts_its_workers(tmp_path: Path) -> None:
    """A main process whose worker child burned 0.5 s of CPU: the benchmark counts it."""
    script = tmp_path / "server.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "if sys.argv[1:] == ['worker']:\n"
        "    end = time.process_time() + 0.5\n"
        "    while time.process_time() < end:\n"
        "        pass\n"
        "    print('busy', flush=True)\n"
        "    time.sleep(60)\n"
        "else:\n"
        "    subprocess.run([sys.executable, __file__, 'worker'])\n"
    )
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"busy\n"
        seconds = sum(receive.server_cpu_seconds(psutil.Process(server.pid)))
        assert seconds >= 0.5  # the worker's, not only the idle main process's
        assert seconds < 5
    finally:
        for child in psutil.Process(server.pid).children(recursive=True):
            child.kill()
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
