"""The receive benchmark's diagnostic sides: what each one keeps of the real receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bench import apps
from bench.receive import event_body, spooled_records
from tests.helpers import new_secret, signed_headers
from tests.syncs import SyncSpy


def post_signed(app: Flask, secret: str, bodies: int = 5) -> None:
    """Post ``bodies`` signed events and a forged one."""
    client = app.test_client()
    for _ in range(bodies):
        body = event_body()
        answer = client.post(
            f"/webhooks/{apps.SOURCE}",
            data=body,
            headers=signed_headers(secret, body),
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
    spy = SyncSpy(monkeypatch)  # after the app: its spool preallocates lazily
    post_signed(app, secret)
    app.extensions["mailpulse"].spool.close()
    assert spooled_records(tmp_path / "spool") == records
    # The first write preallocates the segment with its own fsync (not counted: os.fsync).
    assert (spy.syncs > 0) is synced
