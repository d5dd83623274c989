"""Rate limits hold across gunicorn workers, and a flooded source never starves another.

Each case runs the real server with two workers and floods one source at ten times its
limit while a second source sends at a normal rate. The counts live in a real Redis
(``redis-server`` from Debian, installed by ``scripts/system-deps.sh``), in each worker's
memory (each worker then allows its share), or in a Redis that is down (the workers fall
back to their share and say so).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from mailpulse.demo import free_port
from tests.helpers import Server, event, new_secret, running_server, signed_headers

pytestmark = pytest.mark.slow

LIMIT = 20  # per second, for both sources
FLOOD_RATE = 10 * LIMIT
STEADY_RATE = 5
SECONDS = 3.0
EXTRA = f"""
[sources.flooded]
provider = "generic"
secret_env = "RATE_TEST_SECRET"
rate_limit = "{LIMIT}/second"

[sources.steady]
provider = "generic"
secret_env = "RATE_TEST_SECRET"
rate_limit = "{LIMIT}/second"
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, persisting nothing."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: run scripts/system-deps.sh (make test does)"
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _send(
    server: Server, source: str, rate: float, seconds: float, results: list[tuple[int, str]]
) -> None:
    """POST signed events to ``source`` at ``rate`` per second for ``seconds``."""
    start = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start) < seconds:
        if n >= elapsed * rate:
            time.sleep(min(0.005, 1 / rate))
            continue
        body = json.dumps(event(f"{source}-{threading.get_ident()}-{n}")).encode()
        # A new connection each time, as ESPs do: the kernel spreads them over both workers
        # (one kept-alive connection would stay with one worker and hide a per-worker count).
        response = requests.post(
            f"{server.base_url}/webhooks/{source}",
            data=body,
            headers=signed_headers(server.secret, body),
            timeout=10,
        )
        results.append((response.status_code, response.headers.get("Retry-After", "")))
        n += 1


def _flood(server: Server) -> tuple[Counter[int], Counter[int], float, list[str]]:
    """Flood ``flooded`` from 8 threads while ``steady`` sends at its normal rate."""
    flooded: list[tuple[int, str]] = []
    steady: list[tuple[int, str]] = []
    threads = [
        threading.Thread(target=_send, args=(server, "flooded", FLOOD_RATE / 8, SECONDS, flooded))
        for _ in range(8)
    ]
    threads.append(
        threading.Thread(target=_send, args=(server, "steady", STEADY_RATE, SECONDS, steady))
    )
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    retry_after = [value for status, value in flooded if status == 429]
    return Counter(s for s, _ in flooded), Counter(s for s, _ in steady), took, retry_after


def _check(flooded: Counter[int], steady: Counter[int], took: float, retry: list[str]) -> None:
    # The flood really was ten times the limit, and was cut down to the limit: in a moving
    # window of one second at most LIMIT pass, so over `took` seconds at most LIMIT * (took+1).
    assert sum(flooded.values()) >= 0.8 * FLOOD_RATE * SECONDS, flooded
    assert set(flooded) <= {200, 429}, flooded
    assert LIMIT <= flooded[200] <= LIMIT * (took + 1), (flooded, took)
    assert all(value.isdigit() and int(value) >= 1 for value in retry)
    # The other source was never refused.
    assert steady == Counter({200: steady[200]}) and steady[200] >= STEADY_RATE * SECONDS - 1


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_secret()
    monkeypatch.setenv("RATE_TEST_SECRET", value)
    return value


def test_shared_in_redis_the_limit_holds_across_workers(
    tmp_path: Path, redis_url: str, secret: str
) -> None:
    with running_server(
        tmp_path, secret=secret, extra=EXTRA, workers=2, rate_limit_storage=redis_url
    ) as server:
        _check(*_flood(server))
        log = server.log()
    assert "not answering" not in log
    # The counts are in Redis, where every worker sees them.
    assert redis.Redis.from_url(redis_url).keys("*flooded*")


def test_without_shared_storage_each_worker_allows_its_share(tmp_path: Path, secret: str) -> None:
    with running_server(tmp_path, secret=secret, extra=EXTRA, workers=2) as server:
        _check(*_flood(server))


def test_with_redis_down_the_workers_fall_back_to_their_share_and_say_so(
    tmp_path: Path, secret: str
) -> None:
    down = f"redis://:hunter2-{secret}@127.0.0.1:{free_port()}/0"  # nothing listens there
    with running_server(
        tmp_path, secret=secret, extra=EXTRA, workers=2, rate_limit_storage=down
    ) as server:
        _check(*_flood(server))
        log = server.log()
    assert "rate-limit storage not answering" in log
    assert "rate limits are shared by every worker through" in log  # the start notice
    assert f"hunter2-{secret}" not in log  # the storage password is never printed
