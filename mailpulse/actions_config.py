"""The ``[actions.<name>]`` tables: which events to act on, and what to do with each.

An action is a filter on the normalized event (every filter optional, all must match) and
one ``do``: ``webhook`` (a signed POST of the event), ``slack`` (a message to an incoming
webhook) or ``suppress`` (the address onto the ESP's own suppression list). Credentials are
read like every other secret (``<key>``, ``<key>_env``, ``<key>_file``).

Every mistake is added to the caller's list of problems, one sentence each, so the whole
file is reported at once (:mod:`mailpulse.config`).
"""

from __future__ import annotations

import base64
import binascii
import re
import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailpulse.credentials import Secret, read_credential, string_list
from mailpulse.lake import AGENTS, BOUNCE_CLASSES, EVENT_TYPES, EVENTS_SCHEMA
from mailpulse.sources import SecretHolders, unknown_keys

KINDS = ("webhook", "slack", "suppress")
#: The ESPs whose suppression list ``do = "suppress"`` can add to.
SUPPRESS_PROVIDERS = ("sendgrid", "mailgun", "postmark", "ses")
#: Which event types each ESP's suppression API has a list (or reason) for.
SUPPRESSIBLE = {
    "sendgrid": ("bounced", "complained", "unsubscribed", "dropped"),
    "mailgun": ("bounced", "complained", "unsubscribed"),
    "postmark": ("bounced", "complained", "unsubscribed", "dropped"),
    "ses": ("bounced", "complained"),
}
#: ``agents`` may name each agent of the lake, or ``machine`` for every automated one.
MACHINE_AGENTS = ("apple_mpp", "gmail_proxy", "scanner", "bot")
#: The fields a Slack template may name: every event column but the raw payload.
TEMPLATE_FIELDS = tuple(name for name in EVENTS_SCHEMA if name != "raw")
DEFAULT_TEMPLATE = "{event_type}: {recipient} ({campaign})"

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FILTERS = ("event_types", "sources", "campaigns", "bounce_classes", "agents", "recipient_domains")
_COMMON = {
    "do",
    *_FILTERS,
    "timeout_seconds",
    "concurrency",
    "give_up_after_hours",
    "first_retry_seconds",
    "max_retry_seconds",
    "breaker_failures",
    "breaker_seconds",
}
_SECRET_KEYS = {
    "webhook": ("secret",),
    "slack": ("url",),
    "suppress": ("api_key", "aws_access_key_id", "aws_secret_access_key"),
}
_OPTION_KEYS = {
    "webhook": ("url", "headers"),
    "slack": ("template",),
    "suppress": ("provider", "group_id", "domain", "message_stream", "region", "endpoint_url"),
}


@dataclass(frozen=True)
class ActionFilter:
    """Which normalized events an action takes; an empty tuple means any value."""

    event_types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    bounce_classes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()  # lower case


@dataclass(frozen=True)
class ActionConfig:
    """One ``[actions.<name>]`` table, validated."""

    name: str
    do: str
    filter: ActionFilter = field(default_factory=ActionFilter)
    # url, template, provider, group_id, domain, message_stream, region, endpoint_url
    options: Mapping[str, Any] = field(default_factory=dict)
    # secret (webhook), url (slack), api_key and the AWS keys (suppress); first one is used
    secrets: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    headers: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    timeout_seconds: float = 10.0
    concurrency: int = 4  # deliveries of this action in flight at once
    give_up_after_hours: float = 24.0  # then the action is dead-lettered, never dropped
    first_retry_seconds: float = 1.0  # backoff: full jitter up to first * 2**attempt
    max_retry_seconds: float = 600.0
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_seconds: float = 30.0  # how long it stays open before one trial delivery

    def secret(self, key: str) -> str | None:
        """The revealed secret ``key``, or None when the table does not give it."""
        value = self.secrets.get(key)
        return value.reveal() if value is not None else None


def parse_actions(
    tables: Any,
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: SecretHolders,
) -> dict[str, ActionConfig]:
    """The valid actions of the ``[actions]`` table; every mistake goes to ``problems``."""
    if not isinstance(tables, dict):
        problems.append("actions must be a table of [actions.<name>] tables")
        return {}
    actions: dict[str, ActionConfig] = {}
    for name, table in tables.items():
        where = f"actions.{name}."
        if not _NAME.match(name):
            problems.append(f"actions.{name}: a name is 1-64 letters, digits, '-' or '_'")
            continue
        if not isinstance(table, dict):
            problems.append(f"actions.{name} must be a table")
            continue
        before = len(problems)
        action = _parse_action(name, table, where, base_dir, env, problems, holders)
        if action is not None and len(problems) == before:
            actions[name] = action
    return actions


def _parse_action(
    name: str,
    table: Mapping[str, Any],
    where: str,
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: SecretHolders,
) -> ActionConfig | None:
    do = table.get("do")
    if do not in KINDS:
        problems.append(f"{where}do must be one of {', '.join(KINDS)}, not {do!r}")
        return None
    secret_keys = _SECRET_KEYS[do]
    known = _COMMON | set(_OPTION_KEYS[do])
    known |= {f"{key}{suffix}" for key in secret_keys for suffix in ("", "_env", "_file")}
    unknown_keys(table, known, where, problems)
    secrets: dict[str, Secret] = {}
    for key in secret_keys:
        found = read_credential(key, table, base_dir, env, where, problems, holders)
        if found:
            secrets[key] = found[0]
    options = {key: table[key] for key in _OPTION_KEYS[do] if key in table and key != "headers"}
    action = ActionConfig(
        name=name,
        do=do,
        filter=_parse_filter(table, where, problems),
        options=options,
        secrets=secrets,
        headers=_parse_headers(table.get("headers", {}), where, base_dir, env, problems, holders),
        **_numbers(table, where, problems),
    )
    _CHECKS[do](action, where, problems)
    return action


def _parse_filter(table: Mapping[str, Any], where: str, problems: list[str]) -> ActionFilter:
    values = {
        key: tuple(string_list(table[key], where + key, problems))
        for key in _FILTERS
        if key in table
    }
    allowed = {
        "event_types": sorted(EVENT_TYPES),
        "agents": [*sorted(AGENTS), "machine"],
        "bounce_classes": sorted(BOUNCE_CLASSES),
    }
    for key, choices in allowed.items():
        for value in values.get(key, ()):
            if value not in choices:
                problems.append(f"{where}{key}: {value!r} is not one of {', '.join(choices)}")
    if "machine" in values.get("agents", ()):
        values["agents"] = tuple(
            dict.fromkeys(
                a for v in values["agents"] for a in (MACHINE_AGENTS if v == "machine" else (v,))
            )
        )
    if "recipient_domains" in values:
        values["recipient_domains"] = tuple(d.strip().lower() for d in values["recipient_domains"])
    return ActionFilter(**values)


def _parse_headers(
    table: Any,
    where: str,
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: SecretHolders,
) -> dict[str, Secret]:
    """Extra request headers; each value a credential (``Authorization_env = "CRM_TOKEN"``)."""
    if not isinstance(table, dict):
        problems.append(f"{where}headers must be a table of header names to values")
        return {}
    names = {key.removesuffix("_env").removesuffix("_file") for key in table}
    headers: dict[str, Secret] = {}
    for header in sorted(names):
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", header):
            problems.append(f"{where}headers: {header!r} is not a header name")
            continue
        found = read_credential(header, table, base_dir, env, f"{where}headers.", problems, holders)
        if found:
            headers[header] = found[0]
    return headers


def _numbers(table: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """The numeric settings, each checked to be a positive number of the right kind."""
    defaults = ActionConfig(name="", do="webhook")
    values: dict[str, Any] = {}
    for key in (
        "timeout_seconds",
        "concurrency",
        "give_up_after_hours",
        "first_retry_seconds",
        "max_retry_seconds",
        "breaker_failures",
        "breaker_seconds",
    ):
        if key not in table:
            continue
        value, default = table[key], getattr(defaults, key)
        kind = (int, float) if isinstance(default, float) else int
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            problems.append(f"{where}{key} must be a number greater than zero, not {value!r}")
            continue
        values[key] = value
    if values.get("concurrency", 1) > 64:
        problems.append(f"{where}concurrency must be at most 64")
    return values


def _check_webhook(action: ActionConfig, where: str, problems: list[str]) -> None:
    _check_url(action.options.get("url"), f"{where}url", problems)
    secret = action.secret("secret")
    if secret is None:
        problems.append(
            f"{where}secret: a signing secret is needed (secret, secret_env or secret_file)"
        )
    elif not _is_whsec(secret):
        problems.append(f"{where}secret must be a Standard Webhooks secret: whsec_ and base64")


def _check_slack(action: ActionConfig, where: str, problems: list[str]) -> None:
    url = action.secret("url")
    if url is None:
        problems.append(
            f"{where}url: the incoming-webhook URL is needed (url, url_env or url_file)"
        )
    else:
        _check_url(url, f"{where}url", problems, show=False)
    template = action.options.get("template", DEFAULT_TEMPLATE)
    if not isinstance(template, str) or not template.strip():
        problems.append(f"{where}template must be a non-empty string")
        return
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        problems.append(f"{where}template is not a valid template ({exc})")
        return
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            problems.append(
                f"{where}template: {{{name}}} is not an event field "
                f"(known: {', '.join(TEMPLATE_FIELDS)})"
            )


def _check_suppress(action: ActionConfig, where: str, problems: list[str]) -> None:
    provider = action.options.get("provider")
    if provider not in SUPPRESS_PROVIDERS:
        problems.append(
            f"{where}provider must be one of {', '.join(SUPPRESS_PROVIDERS)}, not {provider!r}"
        )
        return
    types = action.filter.event_types
    if not types:
        problems.append(f'{where}event_types must name what to suppress, e.g. ["bounced"]')
    for event_type in types:
        if event_type not in SUPPRESSIBLE[provider]:
            problems.append(
                f"{where}event_types: {provider} has no suppression for {event_type!r} "
                f"(it takes {', '.join(SUPPRESSIBLE[provider])})"
            )
    if provider != "ses" and action.secret("api_key") is None:
        problems.append(
            f"{where}api_key: {provider} needs an API key (api_key, api_key_env or api_key_file)"
        )
    if provider == "mailgun" and not isinstance(action.options.get("domain"), str):
        problems.append(f"{where}domain: mailgun needs the sending domain")
    group = action.options.get("group_id")
    if group is not None and (
        provider != "sendgrid" or isinstance(group, bool) or not isinstance(group, int)
    ):
        problems.append(f"{where}group_id is a sendgrid unsubscribe group number")
    for key in ("message_stream", "region", "domain"):
        value = action.options.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{where}{key} must be a non-empty string")
    if "endpoint_url" in action.options:
        _check_url(action.options["endpoint_url"], f"{where}endpoint_url", problems)
    keys = [action.secret("aws_access_key_id"), action.secret("aws_secret_access_key")]
    if (keys[0] is None) != (keys[1] is None):
        problems.append(f"{where}aws_access_key_id and aws_secret_access_key go together")


def _check_url(value: Any, where: str, problems: list[str], *, show: bool = True) -> None:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f", not {value!r}" if show else ""
        problems.append(f"{where} must be an http:// or https:// URL with a host{shown}")


def _is_whsec(secret: str) -> bool:
    try:
        return bool(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except (binascii.Error, ValueError):
        return False


_CHECKS = {"webhook": _check_webhook, "slack": _check_slack, "suppress": _check_suppress}
