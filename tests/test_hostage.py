"""One source's dependency held hostage does not hold the others: on the real server, SNS
signing-certificate downloads that never get an answer leave a generic source's webhooks
answered 200 at once, and the held requests themselves end in a 503 within the download's
timeout.

The server reaches the certificate URL (an AWS one, as the provider insists) through the
standard ``HTTPS_PROXY`` setting, which points at a loopback socket that accepts connections
and never says a word.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from ingest.providers.ses.sns import FETCH_TIMEOUT_SECONDS
from mailpulse.simulate.esp.ses import signed_notification
from tests.helpers import Server, event, running_server
from tests.providers.sns_keys import TEST_TOPIC, identity

pytestmark = pytest.mark.slow

HELD = 6  # SNS requests waiting on the silent certificate host, fewer than the threads
SES_SOURCE = f"""
[sources.sns]
provider = "ses"
topic_arns = ["{TEST_TOPIC}"]
"""


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A loopback port that accepts every connection and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        listener.close()


def _sns_post(server: Server, n: int) -> tuple[int, float]:
    """A signed SNS notification naming a certificate no one has fetched yet."""
    url = f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-held-{n}.pem"
    signer = identity(url, label="hostage")
    body = signed_notification(
        json.dumps({"eventType": "Delivery", "mail": {"messageId": str(uuid.uuid4())}}),
        message_id=str(uuid.uuid4()),
        topic_arn=TEST_TOPIC,
        timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        key_pem=signer.key_pem,
        certificate_url=url,
    )
    started = time.monotonic()
    response = requests.post(
        f"{server.base_url}/webhooks/sns",
        data=body,
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
        },
        timeout=30,
    )
    return response.status_code, time.monotonic() - started


def test_a_silent_certificate_host_does_not_hold_other_sources(
    tmp_path: Path, silent_host: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{silent_host}")
    monkeypatch.setenv("NO_PROXY", "")
    with (
        running_server(tmp_path, workers=2, threads=8, extra=SES_SOURCE) as server,
        concurrent.futures.ThreadPoolExecutor(HELD) as pool,
    ):
        held = [pool.submit(_sns_post, server, n) for n in range(HELD)]
        time.sleep(1.0)  # every held request is now waiting on the silent host
        assert not any(future.done() for future in held)
        for n in range(10):
            started = time.monotonic()
            response = server.post(event(f"while-held-{n}"))
            assert response.status_code == 200, response.text
            assert time.monotonic() - started < 1.0
        assert not all(future.done() for future in held)  # still held meanwhile
        for future in held:
            status, seconds = future.result(timeout=30)
            assert status == 503  # SNS retries later
            assert seconds < FETCH_TIMEOUT_SECONDS + 3
