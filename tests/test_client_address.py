"""Client addresses: ``allow_ips`` for IPv4 and IPv6, and ``trusted_proxy_hops``.

Only as many ``X-Forwarded-For`` entries as there are trusted proxies count, from the right;
a client that forges the header directly changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ingest import create_app
from tests.helpers import event, signed_headers


@pytest.fixture
def receiver(make_config: Any, secret: str) -> Iterator[Any]:
    """A test client factory for a config with ``allow_ips`` and proxy hops."""
    apps = []

    def build(allow_ips: list[str], hops: int = 0) -> FlaskClient:
        config = make_config(
            receiver={"trusted_proxy_hops": hops},
            sources={"in_house": {"provider": "generic", "secret": secret, "allow_ips": allow_ips}},
        )
        app = create_app(config)
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["mailpulse"].spool.close()


def post(client: FlaskClient, secret: str, remote: str, forwarded: str | None = None) -> Any:
    body = json.dumps(event("e1")).encode()
    headers = signed_headers(secret, body)
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.post(
        "/webhooks/in_house", data=body, headers=headers, environ_base={"REMOTE_ADDR": remote}
    )


@pytest.mark.parametrize(
    ("allow", "remote", "status"),
    [
        (["192.0.2.0/24"], "192.0.2.10", 200),
        (["192.0.2.0/24"], "198.51.100.1", 403),
        (["2001:db8::/32"], "2001:db8::7", 200),
        (["2001:db8::/32"], "2001:db9::7", 403),
        (["192.0.2.0/24"], "::ffff:192.0.2.10", 200),  # IPv4 through an IPv6 socket
        (["192.0.2.0/24", "2001:db8::/32"], "2001:db8:1::1", 200),
        (["postmark"], "50.31.156.6", 200),  # an ESP's name: the addresses it publishes
        (["postmark"], "50.31.156.8", 403),
        (["Brevo", "192.0.2.0/24"], "1.179.127.254", 200),
        (["brevo"], "192.0.2.10", 403),
    ],
)
def test_allow_ips_for_ipv4_and_ipv6(
    receiver: Any, secret: str, allow: list[str], remote: str, status: int
) -> None:
    response = post(receiver(allow), secret, remote)
    assert response.status_code == status
    if status == 403:
        assert response.json["error"] == "forbidden_address"


def test_a_forged_forwarded_for_from_the_client_changes_nothing(receiver: Any, secret: str) -> None:
    client = receiver(["192.0.2.0/24"], hops=0)
    assert post(client, secret, "198.51.100.1", forwarded="192.0.2.10").status_code == 403
    assert post(client, secret, "192.0.2.10", forwarded="198.51.100.1").status_code == 200


def test_behind_one_proxy_the_last_forwarded_address_is_the_client(
    receiver: Any, secret: str
) -> None:
    client = receiver(["192.0.2.0/24", "2001:db8::/32"], hops=1)
    proxy = "10.0.0.1"
    assert post(client, secret, proxy, forwarded="192.0.2.10").status_code == 200
    assert post(client, secret, proxy, forwarded="2001:db8::5").status_code == 200
    assert post(client, secret, proxy, forwarded="198.51.100.1").status_code == 403
    # The client put an allowed address first; the proxy appended the real one.
    assert post(client, secret, proxy, forwarded="192.0.2.10, 198.51.100.1").status_code == 403


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "sendgrid",
            "'sendgrid' publishes no webhook addresses (ESPs that do: brevo, postmark); "
            "leave allow_ips out and rely on its Signed Event Webhook signature",
        ),
        (
            "postmrak",
            "'postmrak' is not an IPv4 or IPv6 CIDR, nor an ESP that publishes its "
            "webhook addresses (brevo, postmark)",
        ),
    ],
)
def test_an_esp_without_published_addresses_is_refused_in_one_line(
    name: str, message: str, tmp_path: Path
) -> None:
    from mailpulse.errors import ConfigError
    from tests.helpers import load_config

    path = tmp_path / "mailpulse.toml"
    path.write_text(
        f'[sources.sg]\nprovider = "generic"\nsecret = "{"x" * 32}"\nallow_ips = ["{name}"]\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert raised.value.lines() == [f"{path}: sources.sg.allow_ips: {message}"]


def test_every_listed_esp_network_parses_and_names_its_source() -> None:
    from ingest.providers import PROVIDERS
    from mailpulse import esp_networks

    for name, published in esp_networks.PUBLISHED.items():
        assert name in PROVIDERS and published.source.startswith("https://")
        assert esp_networks.networks(name)
    # Every ESP is either listed or said to publish nothing (docs/security.md names those).
    assert set(esp_networks.PUBLISHED) | set(esp_networks.NOT_PUBLISHED) == set(PROVIDERS) - {
        "generic"
    }
