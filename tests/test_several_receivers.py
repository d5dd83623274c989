"""Several receivers as one: two real ``mailpulse serve`` behind nginx, one PostgreSQL.

Each receiver has its own data directory (and loses it when its "host" dies); they share the
spool engine, the dedup index and the lake directory. The load balancer is
``deploy/nginx-two-receivers.conf`` itself, pointed at the test's ports and certificate.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import requests

from mailpulse.demo import free_port
from tests import nginx, postgres
from tests.helpers import REPO, Server, event, mailpulse, new_secret, signed_headers, start_server
from tests.tls import self_signed

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "deploy" / "nginx-two-receivers.conf"
SNS_TRIES, SNS_PAUSE = 4, 20.0  # Amazon SNS's default policy for HTTP(S) subscriptions


@dataclass
class Pair:
    """Two receivers, their configs and the balancer in front."""

    directory: Path
    secret: str
    configs: list[Path]
    ports: list[int]
    servers: list[Server | None]
    url: str = ""
    ca_file: str = ""

    def start(self, host: int) -> Server:
        server = start_server(
            self.configs[host], self.directory, self.secret, port=self.ports[host]
        )
        self.servers[host] = server
        return server

    def lose(self, host: int) -> None:
        """The host is gone: its whole process group killed, its data directory deleted."""
        server = self.servers[host]
        if server is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)
        shutil.rmtree(self.directory / f"host{host}", ignore_errors=True)
        self.servers[host] = None

    def post(self, body: bytes, session: requests.Session) -> requests.Response:
        return session.post(
            f"{self.url}/webhooks/in_house",
            data=body,
            headers=signed_headers(self.secret, body),
            verify=self.ca_file,
            timeout=30,
        )


def host_config(directory: Path, host: int, secret: str, pg_url: str) -> Path:
    path = directory / f"host{host}.toml"
    path.write_text(
        f'data_dir = "{directory / f"host{host}"}"\n\n'
        "[receiver]\nflush_interval_seconds = 0.5\ntrusted_proxy_hops = 1\n\n"
        f'[spool]\nengine = "postgres"\nurl = "{pg_url}"\n\n'
        f'[lake]\nurl = "{directory / "shared-lake"}"\n\n'
        f'[sources.in_house]\nprovider = "generic"\nsecret = "{secret}"\n'
    )
    return path


def balancer_site(pair: Pair, listen: int, cert: Path, key: Path) -> Path:
    example = EXAMPLE.read_text()
    for old, new in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
        ("server 10.0.0.11:8025", f"server 127.0.0.1:{pair.ports[0]}"),
        ("server 10.0.0.12:8025", f"server 127.0.0.1:{pair.ports[1]}"),
        ("/etc/ssl/certs/webhooks.example.com.pem", str(cert)),
        ("/etc/ssl/private/webhooks.example.com.key", str(key)),
    ]:
        assert old in example, f"{EXAMPLE.name} no longer has {old!r}"
        example = example.replace(old, new)
    directory = pair.directory / "nginx"
    directory.mkdir()
    site = directory / "receivers.conf"
    site.write_text(example)
    return site


@pytest.fixture
def pair(tmp_path: Path, pg_url: str) -> Iterator[Pair]:
    secret = new_secret()
    configs = [host_config(tmp_path, host, secret, pg_url) for host in (0, 1)]
    running = Pair(tmp_path, secret, configs, [free_port(), free_port()], [None, None])
    for host in (0, 1):
        running.start(host)
    cert, key = self_signed(tmp_path)
    listen = free_port()
    site = balancer_site(running, listen, cert, key)
    running.url, running.ca_file = f"https://127.0.0.1:{listen}", str(cert)
    try:
        with nginx.running(site.parent, site, running.url, running.ca_file):
            yield running
    finally:
        for host in (0, 1):
            server = running.servers[host]
            if server is not None and server.process.poll() is None:
                server.stop(signal.SIGKILL)


def lake_ids(lake: Path) -> Counter[str]:
    """Event id -> rows over every visible events file, each read whole."""
    counts: Counter[str] = Counter()
    con = duckdb.connect()
    for path in sorted((lake / "events").glob("date=*/*.parquet")):
        counts.update(row[0] for row in con.sql(f"SELECT event_id FROM '{path}'").fetchall())
    return counts


def drain(pair: Pair) -> None:
    """Stop both receivers gracefully (each flushes last), then flush once more."""
    for host in (0, 1):
        server = pair.servers[host]
        if server is not None:
            assert server.stop() == 0, server.log()
    result = mailpulse("flush", config=pair.configs[0])
    assert result.returncode == 0, result.stderr


def test_a_host_lost_under_load_loses_nothing_and_doubles_nothing(pair: Pair) -> None:
    rng = random.Random(20261206)
    acknowledged: set[str] = set()
    gave_up: list[str] = []
    failures: list[str] = []  # what each failed try met, to explain a give-up
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(10**9))

    def send(worker: int) -> None:
        session = requests.Session()
        while not stop.is_set():
            with lock:
                n = next(counter)
            ids = [f"w{worker}-{n}-{k}" for k in range(3)]
            body = json.dumps([event(i) for i in ids]).encode()
            for attempt in range(SNS_TRIES):  # as SNS retries: four tries, 20 s apart
                started = time.monotonic()
                try:
                    answer = pair.post(body, session)
                    if answer.status_code == 200:
                        with lock:
                            acknowledged.update(ids)
                        break
                    outcome = f"{answer.status_code} {answer.text[:120]!r}"
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                with lock:
                    failures.append(
                        f"{ids[0]} try {attempt + 1}: {outcome}"
                        f" after {time.monotonic() - started:.1f} s"
                    )
                if attempt < SNS_TRIES - 1:
                    time.sleep(SNS_PAUSE)
            else:
                with lock:
                    gave_up.extend(ids)

    senders = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in senders:
        thread.start()
    for kill_point in range(10):  # ten hosts lost, alternately, at random moments
        time.sleep(rng.uniform(1.0, 3.0))
        host = kill_point % 2
        pair.lose(host)
        time.sleep(rng.uniform(0.5, 2.0))
        pair.start(host)  # a new host, empty data directory, same address
    stop.set()
    for thread in senders:
        thread.join(timeout=SNS_TRIES * SNS_PAUSE + 60)
    drain(pair)

    stored = lake_ids(pair.directory / "shared-lake")
    assert len(acknowledged) > 300, "the load never got going"
    given_up_tries = [line for line in failures if line.split()[0] in gave_up]
    assert not gave_up, f"the sender gave up on {len(gave_up)} events: {given_up_tries}"
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    doubled = [key for key, count in stored.items() if count > 1]
    assert not doubled, f"{len(doubled)} events stored twice, e.g. {doubled[:3]}"


def test_an_esp_retry_on_the_other_host_is_a_duplicate_not_a_second_row(pair: Pair) -> None:
    body = json.dumps([event("retried-elsewhere")]).encode()
    hosts = [server for server in pair.servers if server is not None]
    answers: list[int] = []

    def post(server: Server) -> None:
        answers.append(server.post(body).status_code)

    both = [threading.Thread(target=post, args=(server,)) for server in hosts]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    assert answers == [200, 200]
    result = mailpulse("flush", config=pair.configs[1])
    assert result.returncode == 0, result.stderr
    # Both hosts' flushers take turns leading; each says so in its own metrics.
    deadline = time.monotonic() + 20
    while not all(_led(server) for server in hosts):
        assert time.monotonic() < deadline, "a host never led a flush"
        time.sleep(0.2)
    scraped = requests.get(f"{hosts[0].base_url}/metrics", timeout=10).text
    assert "mailpulse_flusher_lead_changes_total" in scraped
    assert "mailpulse_spool_oldest_seconds" in scraped
    # Later, once the first copy is in the lake: the other host again.
    assert hosts[0].post(body).status_code == 200
    drain(pair)
    assert lake_ids(pair.directory / "shared-lake") == Counter({"retried-elsewhere": 1})


def _led(server: Server) -> bool:
    """Whether this host's flusher led a pass (its metrics count its own passes)."""
    text = requests.get(f"{server.base_url}/metrics", timeout=10).text
    passes = re.search(r'^mailpulse_flusher_passes_total\{host="[^"]*"\} (\S+)$', text, re.M)
    return passes is not None and float(passes[1]) > 0


def test_while_postgresql_is_down_receivers_answer_503_and_recover_on_their_own(
    tmp_path: Path,
) -> None:
    secret = new_secret()
    with postgres.cluster() as database:
        config = host_config(tmp_path, 0, secret, database.new_database())
        server = start_server(config, tmp_path, secret)
        try:
            assert "spool: PostgreSQL postgresql://mailpulse@127.0.0.1:" in server.log()
            assert server.post([event("before")]).status_code == 200
            database.stop()
            refused = server.post([event("during")])
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "spool_unavailable"
            assert int(refused.headers["Retry-After"]) > 0
            ready = requests.get(f"{server.base_url}/readyz", timeout=10)
            assert ready.status_code == 503
            database.start()
            deadline = time.monotonic() + 30
            while requests.get(f"{server.base_url}/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the receiver never recovered"
                time.sleep(0.2)
            assert server.post([event("after")]).status_code == 200
        finally:
            assert server.stop() == 0, server.log()
        assert mailpulse("flush", config=config).returncode == 0
        assert set(lake_ids(tmp_path / "shared-lake")) == {"before", "after"}
