"""The ``[sources.<name>]`` tables: a URL ``/webhooks/<name>`` each, and how to trust it.

What keys a source takes depends on its provider, and the provider modules belong to
``ingest``: the configuration does not import them. Whoever receives webhooks (``ingest``,
the CLI) passes the registry in as ``providers``; without it, sources are not read at all,
which is what readers of the lake want (a notebook needs no webhook secret).

The demo setup (no ``mailpulse.toml``) reads its sources from the credentials ``mailpulse
demo`` generated into the data directory; reading them never creates them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mailpulse import esp_networks
from mailpulse.credentials import Secret, read_credential, string_list
from mailpulse.errors import MailpulseError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Where ``mailpulse demo`` keeps the demo sources' credentials, in the data directory.
DEMO_CREDENTIALS = "demo_credentials.json"

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMMON_SOURCE_KEYS = {
    "provider",
    "allow_ips",
    "rate_limit",
    "campaign",
    "max_body_bytes",
    "shadow",
}


@dataclass(frozen=True)
class SourceConfig:
    """One ``[sources.<name>]`` table: a URL ``/webhooks/<name>`` and how to trust it."""

    name: str
    provider: str
    credentials: Mapping[str, tuple[Secret, ...]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    allow_ips: tuple[IPNetwork, ...] = ()  # empty: every address may post
    rate_limit: str | None = None
    campaign: str | None = None
    max_body_bytes: int | None = None
    # Accept what fails authentication too, recording the verdict: for moving an existing
    # endpoint over without losing events while credentials are being set up. Off by default.
    shadow: bool = False


class ProviderRules(Protocol):
    """What the configuration asks of a provider (a provider class of ``ingest`` is one)."""

    @property
    def credential_keys(self) -> frozenset[str]:
        """Secret keys a source of this provider reads."""
        ...

    @property
    def option_keys(self) -> frozenset[str]:
        """Non-secret keys a source of this provider may set."""
        ...

    def config_problems(self, source: SourceConfig) -> list[str]:
        """Mistakes in a source's settings; empty when it can start."""
        ...


#: The config file and the list of files found to hold a secret (``read_credential`` adds).
SecretHolders = tuple[Path | None, list[Path]]


def unknown_keys(
    table: Mapping[str, Any], known: set[str], where: str, problems: list[str]
) -> None:
    """One problem per key of ``table`` that is not ``known``."""
    for key in table:
        if key not in known:
            hint = f" (known: {', '.join(sorted(known))})"
            problems.append(f"{where}{key}: unknown key{hint}")


def parse_sources(
    tables: Any,
    providers: Mapping[str, ProviderRules] | None,
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: SecretHolders,
) -> dict[str, SourceConfig]:
    """The valid sources of the ``[sources]`` table; every mistake is added to ``problems``.

    Without ``providers`` only the table's shape is checked and no source is returned.
    """
    if not isinstance(tables, dict):
        problems.append("sources must be a table of [sources.<name>] tables")
        return {}
    sources: dict[str, SourceConfig] = {}
    for name, table in tables.items():
        where = f"sources.{name}"
        if not _SOURCE_NAME.match(name):
            problems.append(f"{where}: a source name is 1-64 letters, digits, '-' or '_'")
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
        elif providers is not None:
            source = _parse_source(name, table, providers, base_dir, env, problems, holders)
            if source is not None:
                sources[name] = source
    return sources


def _parse_source(
    name: str,
    table: dict[str, Any],
    providers: Mapping[str, ProviderRules],
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: SecretHolders,
) -> SourceConfig | None:
    """One source: its provider, its keys, its credentials, then the common settings."""
    where = f"sources.{name}"
    provider_name = table.get("provider")
    if not isinstance(provider_name, str) or provider_name not in providers:
        known = ", ".join(sorted(providers))
        problems.append(f"{where}.provider: unknown provider {provider_name!r} (known: {known})")
        return None
    provider = providers[provider_name]
    credential_names = {
        f"{key}{suffix}" for key in provider.credential_keys for suffix in ("", "_env", "_file")
    }
    allowed = _COMMON_SOURCE_KEYS | set(provider.option_keys) | credential_names
    unknown_keys(table, allowed, f"{where}.", problems)
    before = len(problems)
    credentials: dict[str, tuple[Secret, ...]] = {}
    for key in sorted(provider.credential_keys):
        values = read_credential(key, table, base_dir, env, f"{where}.", problems, holders)
        if values:
            credentials[key] = values
    credentials_ok = len(problems) == before
    source = SourceConfig(
        name=name,
        provider=provider_name,
        credentials=credentials,
        options={key: table[key] for key in provider.option_keys if key in table},
        **_common_settings(table, where, problems),
    )
    if credentials_ok:  # otherwise a credential mistake already said what is missing
        problems.extend(f"{where}: {problem}" for problem in provider.config_problems(source))
    return source


def _common_settings(table: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """The keys every source may set, whatever its provider; invalid ones are left out."""
    settings: dict[str, Any] = {"allow_ips": _allow_ips(table, where, problems)}
    rate_limit = table.get("rate_limit")
    if rate_limit is not None and (
        not isinstance(rate_limit, str) or not _valid_rate_limit(rate_limit)
    ):
        problems.append(f'{where}.rate_limit: {rate_limit!r} is not a rate limit like "200/second"')
    else:
        settings["rate_limit"] = rate_limit
    campaign = table.get("campaign")
    if campaign is not None and (not isinstance(campaign, str) or not campaign):
        problems.append(f"{where}.campaign must name a field")
    else:
        settings["campaign"] = campaign
    max_body = table.get("max_body_bytes")
    if max_body is not None and (
        isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0
    ):
        problems.append(f"{where}.max_body_bytes must be a positive integer")
    else:
        settings["max_body_bytes"] = max_body
    shadow = table.get("shadow", False)
    if not isinstance(shadow, bool):
        problems.append(f"{where}.shadow must be true or false")
    else:
        settings["shadow"] = shadow
    return settings


def _allow_ips(table: Mapping[str, Any], where: str, problems: list[str]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for cidr in string_list(table.get("allow_ips", []), f"{where}.allow_ips", problems):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            # An ESP's name stands for the webhook addresses it publishes.
            named = esp_networks.networks(cidr)
            if named is not None:
                networks.extend(named)
                continue
            reason = esp_networks.unknown_name_problem(cidr) or (
                f"{cidr!r} is not an IPv4 or IPv6 CIDR, nor an ESP that publishes its "
                f"webhook addresses ({', '.join(sorted(esp_networks.PUBLISHED))})"
            )
            problems.append(f"{where}.allow_ips: {reason}")
    return tuple(networks)


def _valid_rate_limit(text: str) -> bool:
    from limits import parse_many

    try:
        return bool(parse_many(text))
    except ValueError:
        return False


def read_demo_credentials(path: Path) -> dict[str, dict[str, Any]]:
    """The sources of a demo credentials file; empty when there is none. Never writes.

    Returns ``{source: {"provider": ..., "receiver": {...}, "sender": {...}}}``.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MailpulseError(f"cannot read {path} ({exc.__class__.__name__})") from None
    sources = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(sources, dict):
        raise MailpulseError(f'{path} must hold {{"sources": {{...}}}}')
    return {name: entry for name, entry in sources.items() if isinstance(entry, dict)}


def demo_source_tables(data_dir: Path) -> dict[str, dict[str, Any]]:
    """``[sources.<name>]`` tables for the demo credentials in ``data_dir`` (none: empty)."""
    return {
        name: {"provider": entry["provider"], **entry.get("receiver", {})}
        for name, entry in read_demo_credentials(data_dir / DEMO_CREDENTIALS).items()
    }
