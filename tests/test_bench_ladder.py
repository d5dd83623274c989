"""The receive benchmark's diagnostic sides: what each one keeps of the real receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bench import apps
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
        writer = spool._writer.get()
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    spool.close()
    assert spooled_records(tmp_path / "spool") == records
