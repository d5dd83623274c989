"""Mailbox providers from recipient domains: who hosts the inbox.

Only consumer domains are known by name; a company domain hosted on Google Workspace or
Microsoft 365 cannot be told from its name alone and counts as ``other``.
"""

from __future__ import annotations

MAILBOX_PROVIDERS: dict[str, tuple[str, ...]] = {
    "gmail": ("gmail.com", "googlemail.com"),
    "microsoft": (
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "hotmail.co.uk",
        "outlook.de",
        "hotmail.fr",
        "live.co.uk",
    ),
    "yahoo": (
        "yahoo.com",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.co.jp",
    ),
    "apple": ("icloud.com", "me.com", "mac.com"),
}


def mailbox_provider_sql(domain_column: str = "recipient_domain") -> str:
    """A SQL CASE expression mapping a domain column to ``gmail``, ``microsoft``, ... ``other``."""
    branches = " ".join(
        f"WHEN {domain_column} IN ({', '.join(repr(d) for d in domains)}) THEN '{name}'"
        for name, domains in MAILBOX_PROVIDERS.items()
    )
    return f"CASE {branches} ELSE 'other' END"


def mailbox_provider(domain: str) -> str:
    """The mailbox provider of one domain (the Python twin of :func:`mailbox_provider_sql`)."""
    domain = domain.lower()
    for name, domains in MAILBOX_PROVIDERS.items():
        if domain in domains:
            return name
    return "other"
