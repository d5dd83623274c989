"""The addresses ESPs publish for their webhook requests, so ``allow_ips`` can name an ESP.

``allow_ips = ["postmark"]`` in a source stands for every network below under that name
(and may be mixed with CIDRs). Each list names the ESP's own page it comes from and the date
it was taken; an ESP that changes its list needs a new release here, so check the page when a
request from the ESP is refused with 403 ``forbidden_address``.

ESPs that publish no list (or only a hostname) cannot be named: their requests are
authenticated by their signature or credentials alone (docs/security.md says which).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Published:
    """One ESP's webhook source networks, where they were published and when they were read."""

    networks: tuple[str, ...]
    source: str
    read_on: str


PUBLISHED: dict[str, Published] = {
    "postmark": Published(
        networks=("3.134.147.250/32", "50.31.156.6/32", "50.31.156.77/32", "18.217.206.57/32"),
        # Linked from postmarkapp.com/developer/webhooks/webhooks-overview ("IPs for
        # firewalls"); Postmark notes the origin address can change for each attempt. These
        # four are the webhook addresses that article is cited for; the article itself could
        # not be read when the list was taken, so compare it with the page before relying on it.
        source="https://postmarkapp.com/support/article/800-ips-for-firewalls#webhooks",
        read_on="2026-12-06",
    ),
    "brevo": Published(
        networks=("1.179.112.0/20", "172.246.240.0/20"),  # "Webhook IP ranges"
        source="https://help.brevo.com/hc/en-us/articles/15127404548498",
        read_on="2026-12-06",
    ),
}

#: ESPs whose webhook addresses are not published as a list, and what to rely on instead.
NOT_PUBLISHED: dict[str, str] = {
    "sendgrid": "its Signed Event Webhook signature",
    "mailgun": "its HMAC signature",
    "ses": "Amazon SNS's message signature",
    "resend": "its Svix signature",
    "sparkpost": "Basic auth or OAuth (it publishes a hostname, wh.egress.sparkpost.com, only)",
    "mailjet": "Basic auth in the webhook URL",
    "mandrill": "its X-Mandrill-Signature",
}


def networks(name: str) -> tuple[IPNetwork, ...] | None:
    """The networks ``name`` stands for, or None when it names no ESP with a published list."""
    published = PUBLISHED.get(name.lower())
    if published is None:
        return None
    return tuple(ipaddress.ip_network(cidr) for cidr in published.networks)


def unknown_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used in ``allow_ips``, when it names an ESP; else None."""
    instead = NOT_PUBLISHED.get(name.lower())
    if instead is None:
        return None
    known = ", ".join(sorted(PUBLISHED))
    return (
        f"{name!r} publishes no webhook addresses (ESPs that do: {known}); "
        f"leave allow_ips out and rely on {instead}"
    )
