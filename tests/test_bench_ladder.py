"""The receive benchmark's diagnostic sides: what each one keeps of the real receiver."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bench import apps
from bench.receive import event_body
from ingest.providers.generic import sign
from ingest.segments import list_segments, read_segment


class SyncCounter:
    """Counts ``fdatasync`` calls and ``RWF_DSYNC`` writes; the real calls still run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.syncs = 0
        real_fdatasync, real_pwritev = os.fdatasync, os.pwritev

        def fdatasync(fd: int) -> None:
            self.syncs += 1
            real_fdatasync(fd)

        def pwritev(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
            self.syncs += bool(flags & getattr(os, "RWF_DSYNC", 0))
            return real_pwritev(fd, buffers, offset, flags)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "pwritev", pwritev)


def post_signed(app: Flask, secret: str, bodies: int = 5) -> None:
    client = app.test_client()
    for _ in range(bodies):
        body = event_body()
        timestamp = int(time.time())
        answer = client.post(
            f"/webhooks/{apps.SOURCE}",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Webhook-Timestamp": str(timestamp),
                "X-Webhook-Signature": sign(secret, timestamp, body),
            },
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
    wrong = client.post(
        f"/webhooks/{apps.SOURCE}",
        data=b"{}",
        headers={"Content-Type": "application/json", "X-Webhook-Timestamp": "1"},
    )
    assert wrong.status_code == 401  # still the real authentication


def spooled(data_dir: Path) -> int:
    return sum(
        len(read_segment(path, 0, 1 << 30).records) for path in list_segments(data_dir / "spool")
    )


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    value = secrets.token_hex(16)
    monkeypatch.setenv(apps.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(apps.SECRET_ENV, value)
    return value


@pytest.mark.parametrize(
    ("factory", "records", "synced"),
    [(apps.full, 5, True), (apps.unsynced, 5, False), (apps.verified, 0, False)],
)
def test_each_side_keeps_what_it_says(
    factory: Any,
    records: int,
    synced: bool,
    secret: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = factory()
    counter = SyncCounter(monkeypatch)  # after the app: its spool preallocates lazily
    post_signed(app, secret)
    app.extensions["mailpulse"].spool.close()
    assert spooled(tmp_path) == records
    # The first write preallocates the segment with its own fsync (not counted: os.fsync).
    assert (counter.syncs > 0) is synced
