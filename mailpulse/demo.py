"""``mailpulse demo``: a receiver on localhost, signed traffic with duplicates, the report.

The traffic is generic-format events for a few campaigns, with realistic outcomes (most
delivered, some hard and soft bounces, human and Apple-proxy opens, clicks, the odd complaint
and unsubscribe), sent in all three body shapes, a share of requests sent twice as ESPs do.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from ingest.providers.generic import sign
from mailpulse.config import Config
from mailpulse.errors import MailpulseError

CAMPAIGNS = ("black-friday-2026", "weekly-digest-48", "onboarding-day-1")
DOMAINS = (
    ("gmail.com", 30),
    ("outlook.com", 15),
    ("hotmail.com", 5),
    ("yahoo.com", 12),
    ("icloud.com", 13),
    ("acme-corp.com", 10),
    ("example-bank.de", 5),
    ("fastmail.com", 10),
)
HUMAN_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
)
APPLE_PROXY_AGENT = "Mozilla/5.0"
CORPORATE = frozenset({"acme-corp.com", "example-bank.de"})
# How a recipient's mailbox behaves over the campaigns: most are fine; "full" soft-bounces
# every time, "filling" from the second campaign on, "unknown" does not exist.
PROFILES = ("ok", "full", "filling", "unknown")
PROFILE_WEIGHTS = (88, 5, 4, 3)
GMAIL_PROXY_AGENT = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


def generate_events(
    messages: int, *, seed: int = 7, now: float | None = None
) -> list[dict[str, Any]]:
    """Generic-format events for ``messages`` messages, deterministic for a seed.

    Each recipient gets one message per campaign, the campaigns a day apart, so histories
    build up: some mailboxes are full (a soft bounce every time, so they end up suppressed),
    some are nearly so, some addresses do not exist (a hard bounce, then the ESP drops them),
    and corporate gateways click every link the moment a message arrives.
    """
    rng = random.Random(seed)
    now = time.time() if now is None else now
    domains = [d for d, _ in DOMAINS]
    weights = [w for _, w in DOMAINS]
    recipients = max(1, -(-messages // len(CAMPAIGNS)))
    profiles = [
        (rng.choices(domains, weights)[0], rng.choices(PROFILES, PROFILE_WEIGHTS)[0])
        for _ in range(recipients)
    ]
    events: list[dict[str, Any]] = []
    for n in range(messages):
        wave, recipient = n % len(CAMPAIGNS), n // len(CAMPAIGNS)
        campaign = CAMPAIGNS[wave]
        domain, profile = profiles[recipient]
        message_id = f"msg-{seed}-{n:06d}"
        sent_at = now - (len(CAMPAIGNS) - wave) * 86_400 + rng.uniform(0, 3600)
        base = {
            "email": f"user{recipient:05d}@{domain}",
            "message_id": message_id,
            "campaign": campaign,
            "tags": [campaign.split("-")[0]],
        }

        def event(kind: str, at: float, base: dict[str, Any] = base, **extra: Any) -> None:
            events.append(
                {
                    "id": f"{base['message_id']}-{kind}-{len(events)}",
                    "type": kind,
                    "timestamp": round(at, 3),
                    **base,
                    **extra,
                }
            )

        if profile == "unknown" and wave > 0:
            event("dropped", sent_at, bounce_class="bounced", reason="previously bounced address")
            continue
        event("sent", sent_at)
        if profile == "unknown":
            event(
                "bounced",
                sent_at + 2,
                bounce_class="hard",
                smtp_status="5.1.1",
                reason="550 5.1.1 user unknown",
            )
            continue
        if profile == "full" or (profile == "filling" and wave > 0):
            event(
                "bounced",
                sent_at + 5,
                bounce_class="soft",
                smtp_status="4.2.2",
                reason="452 4.2.2 mailbox full",
            )
            continue
        if rng.random() < 0.05:
            event("deferred", sent_at + 1, smtp_status="4.7.0", reason="421 try again later")
        delivered_at = sent_at + rng.uniform(1, 30)
        event("delivered", delivered_at)
        if domain in CORPORATE and rng.random() < 0.4:  # the gateway checks every link
            for link in range(3):
                event(
                    "clicked",
                    delivered_at + 0.5 + link * 0.3,
                    user_agent=HUMAN_AGENTS[0],
                    url=f"https://shop.example.com/{campaign}/link-{link}",
                )
        if domain == "icloud.com" and rng.random() < 0.7:
            event(
                "opened",
                delivered_at + rng.uniform(5, 60),
                user_agent=APPLE_PROXY_AGENT,
                ip="17.58.0.1",
            )
        if domain == "gmail.com" and rng.random() < 0.3:
            event("opened", delivered_at + rng.uniform(60, 600), user_agent=GMAIL_PROXY_AGENT)
        if rng.random() < 0.35:
            opened_at = delivered_at + rng.uniform(60, 36_000)
            event("opened", opened_at, user_agent=rng.choice(HUMAN_AGENTS))
            if rng.random() < 0.3:
                event(
                    "clicked",
                    opened_at + rng.uniform(2, 120),
                    user_agent=rng.choice(HUMAN_AGENTS),
                    url=f"https://shop.example.com/{campaign}?utm_source=email",
                )
        if rng.random() < 0.006:
            event("complained", delivered_at + rng.uniform(600, 86_400))
        elif rng.random() < 0.02:
            event("unsubscribed", delivered_at + rng.uniform(600, 86_400))
    return events


def request_bodies(events: list[dict[str, Any]], seed: int = 7) -> Iterator[bytes]:
    """Group events into bodies of every generic shape: object, array, {"events": [...]}."""
    rng = random.Random(seed)
    position = 0
    shape = 0
    while position < len(events):
        if shape % 3 == 0:
            body: Any = events[position]
            position += 1
        else:
            size = rng.randint(2, 6)
            chunk = events[position : position + size]
            position += size
            body = chunk if shape % 3 == 1 else {"events": chunk}
        shape += 1
        yield json.dumps(body).encode()


@dataclass
class SendResult:
    """What a traffic run sent and how the receiver answered."""

    requests: int = 0
    duplicates_sent: int = 0
    accepted: int = 0
    failed: int = 0


def send(
    url: str,
    secret: str,
    bodies: list[bytes],
    *,
    duplicate_rate: float = 0.15,
    threads: int = 8,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> SendResult:
    """POST every body signed, plus a share sent again (as ESP retries do), concurrently."""
    rng = random.Random(seed)
    plan = list(bodies)
    extra = [body for body in bodies if rng.random() < duplicate_rate]
    plan += extra
    rng.shuffle(plan)
    result = SendResult(requests=len(plan), duplicates_sent=len(extra))
    session = requests.Session()

    def post(body: bytes) -> bool:
        for attempt in range(5):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Webhook-Timestamp": str(timestamp),
                "X-Webhook-Signature": sign(secret, timestamp, body),
            }
            try:
                response = session.post(url, data=body, headers=headers, timeout=10)
            except requests.RequestException:
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code == 200:
                return True
            if response.status_code not in (429, 503):
                return False
            time.sleep(0.2 * (attempt + 1))
        return False

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for ok in pool.map(post, plan):
            if ok:
                result.accepted += 1
            else:
                result.failed += 1
            if progress is not None:
                progress(1)
    return result


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(
    config_args: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``mailpulse serve`` on loopback in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailpulse", "serve", "--port", str(port), *config_args],
        env=env,
        start_new_session=True,
    )


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until ``/readyz`` answers 200, or raise MailpulseError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MailpulseError(f"the server exited with status {process.returncode}")
        try:
            if requests.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise MailpulseError("the server did not become ready in time")


def stop_server(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM the server (it drains and flushes), then wait for it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def demo_source(config: Config) -> tuple[str, str]:
    """The first generic source and its first secret, to sign the demo traffic with."""
    for name, source in sorted(config.sources.items()):
        if source.provider == "generic" and source.credentials.get("secret"):
            return name, source.credentials["secret"][0].reveal()
    raise MailpulseError("the demo needs a generic source with a secret in the configuration")
