"""Configuration: ``mailpulse.toml`` plus the environment, validated once at start.

Where the file is found, in order: the ``--config PATH`` option, ``MAILPULSE_CONFIG``, then
``./mailpulse.toml``. With none, a demo setup applies (one source per registered provider,
named after it, whose credentials are generated into the data directory) and
:attr:`Config.is_demo` says so.
``MAILPULSE_DATA_DIR`` overrides ``data_dir``. A relative ``data_dir`` in a file is taken
relative to that file.

Any credential key may instead be given as ``<key>_env`` (the name of an environment
variable) or ``<key>_file`` (a path whose contents are the secret), and any may be a list:
every listed secret verifies, which is how secrets are rotated without downtime.

Every mistake is collected and reported together in one :class:`~mailpulse.errors.ConfigError`,
one sentence each, so a person fixes the file in one pass.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailpulse.credentials import Secret as Secret
from mailpulse.credentials import read_credential, string_list
from mailpulse.credentials import redacted_url as redacted_url
from mailpulse.errors import ConfigError

DEFAULT_CONFIG_NAME = "mailpulse.toml"
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Schemes of the stores ``receiver.rate_limit_storage`` may name besides ``memory://``.
SHARED_RATE_LIMIT_SCHEMES = ("redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix")


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


@dataclass(frozen=True)
class ReceiverConfig:
    """The ``[receiver]`` table."""

    max_body_bytes: int = 10_485_760
    flush_interval_seconds: float = 5.0
    trusted_proxy_hops: int = 0
    retry_after_seconds: int = 30
    # A body that stops arriving for this long is answered 408: a slow client cannot hold a
    # worker thread forever.
    read_timeout_seconds: float = 10.0
    spool_max_bytes: int = 4 * 1024**3  # answer 503 rather than fill the disk
    # memory:// (each worker enforces its share) or a store every worker shares (redis://...);
    # kept out of repr: the URL may hold a password.
    rate_limit_storage: str = field(default="memory://", repr=False)
    workers: int = 2
    threads: int = 8


@dataclass(frozen=True)
class LakeConfig:
    """The ``[lake]`` table."""

    dedup_window_days: int = 45  # event ids remembered for at least this long
    flush_batch_bytes: int = 32 * 1024 * 1024  # spool bytes per flush batch: bounds memory


@dataclass(frozen=True)
class SuppressionConfig:
    """The ``[suppression]`` table (rules in DESIGN.md, "Suppression")."""

    hard_bounce: bool = True
    complaint: bool = True
    unsubscribe: bool = True
    invalid_drop: bool = True
    soft_bounce_limit: int = 3
    soft_bounce_window_days: int = 30


@dataclass(frozen=True)
class DashboardConfig:
    """The ``[dashboard]`` table."""

    # The receiver whose /metrics the ingestion-health page reads for signature failures.
    receiver_url: str = "http://127.0.0.1:8025"


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    data_dir: Path
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    suppression: SuppressionConfig = field(default_factory=SuppressionConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    origin: str = "built-in demo defaults"
    is_demo: bool = False
    # Files that hold a secret: the config file itself when a secret is written in it, and
    # every ``<key>_file``. ``mailpulse serve`` warns when one is readable by every user.
    secret_files: tuple[Path, ...] = ()

    @property
    def spool_dir(self) -> Path:
        """Where accepted requests are made durable before they are answered."""
        return self.data_dir / "spool"

    @property
    def lake_dir(self) -> Path:
        """The Parquet lake (``events``, ``raw``, ``quarantine``)."""
        return self.data_dir / "lake"

    @property
    def state_dir(self) -> Path:
        """The flusher's own bookkeeping (offsets, seen ids, journal)."""
        return self.data_dir / "state"


def find_config_path(
    explicit: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> Path | None:
    """The config file to read, or None for the demo defaults."""
    if explicit:
        return Path(explicit)
    if env.get("MAILPULSE_CONFIG"):
        return Path(env["MAILPULSE_CONFIG"])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Find, read and validate the configuration.

    Raises:
        ConfigError: with every mistake found, one sentence each.
    """
    env = os.environ if env is None else env
    found = find_config_path(path, env)
    if found is None:
        return _demo_config(env)
    origin = str(found)
    try:
        document = tomllib.loads(found.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(["file not found"], origin) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot be read ({exc.__class__.__name__})"], origin) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"is not valid TOML: {exc}"], origin) from None
    return parse_config(document, origin=origin, base_dir=found.resolve().parent, env=env)


def parse_config(
    document: Mapping[str, Any],
    *,
    origin: str = "configuration",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate a parsed TOML document (tests call this directly)."""
    env = os.environ if env is None else env
    problems: list[str] = []
    _unknown_keys(
        document,
        {"data_dir", "receiver", "lake", "suppression", "dashboard", "sources"},
        "",
        problems,
    )

    data_dir_value = env.get("MAILPULSE_DATA_DIR") or document.get("data_dir", "data")
    if not isinstance(data_dir_value, str) or not data_dir_value:
        problems.append("data_dir must be a path string")
        data_dir_value = "data"
    data_dir = Path(data_dir_value).expanduser()
    if not data_dir.is_absolute() and base_dir is not None and not env.get("MAILPULSE_DATA_DIR"):
        data_dir = base_dir / data_dir

    receiver = _section(document, "receiver", ReceiverConfig, problems)
    lake = _section(document, "lake", LakeConfig, problems)
    suppression = _section(document, "suppression", SuppressionConfig, problems)
    dashboard = _section(document, "dashboard", DashboardConfig, problems)
    _check_receiver(receiver, problems)
    if not _valid_http_url(dashboard.receiver_url):
        problems.append("dashboard.receiver_url must be an http:// or https:// URL with a host")
    if lake.dedup_window_days < 30:
        problems.append("lake.dedup_window_days must be at least 30 (ESPs retry for days)")
    if lake.flush_batch_bytes < 4096:
        problems.append("lake.flush_batch_bytes must be at least 4096")

    sources: dict[str, SourceConfig] = {}
    secret_files: list[Path] = []
    # Secrets written in the file itself make the file a secret (a parsed document has none).
    config_file = Path(origin) if base_dir is not None else None
    if config_file is not None and urllib.parse.urlsplit(receiver.rate_limit_storage).password:
        secret_files.append(config_file)
    raw_sources = document.get("sources", {})
    if not isinstance(raw_sources, dict):
        problems.append("sources must be a table of [sources.<name>] tables")
        raw_sources = {}
    for name, table in raw_sources.items():
        source = _parse_source(name, table, base_dir, env, problems, (config_file, secret_files))
        if source is not None:
            sources[name] = source
    if problems:
        raise ConfigError(problems, origin)
    return Config(
        data_dir=data_dir,
        receiver=receiver,
        lake=lake,
        suppression=suppression,
        dashboard=dashboard,
        sources=sources,
        origin=origin,
        secret_files=tuple(dict.fromkeys(path.resolve() for path in secret_files)),
    )


def _demo_config(env: Mapping[str, str]) -> Config:
    """The built-in demo setup: one source per registered provider, named after it.

    Credentials are generated once per provider into ``<data_dir>/demo_credentials.json``
    (see :mod:`mailpulse.simulate.credentials`) and validated like a file's sources.
    """
    from dataclasses import replace

    from mailpulse.simulate.credentials import ensure_demo_credentials

    data_dir = Path(env.get("MAILPULSE_DATA_DIR") or "data")
    stored = ensure_demo_credentials(data_dir)
    document = {
        "data_dir": str(data_dir),
        "sources": {
            name: {"provider": entry["provider"], **entry.get("receiver", {})}
            for name, entry in stored.items()
        },
    }
    config = parse_config(document, origin=str(data_dir / "demo_credentials.json"), env=env)
    return replace(config, origin="built-in demo defaults", is_demo=True)


def _unknown_keys(
    table: Mapping[str, Any], known: set[str], where: str, problems: list[str]
) -> None:
    for key in table:
        if key not in known:
            hint = f" (known: {', '.join(sorted(known))})"
            problems.append(f"{where}{key}: unknown key{hint}")


def _section(document: Mapping[str, Any], name: str, kind: type[Any], problems: list[str]) -> Any:
    """Read a flat table into its dataclass, checking names and types against the defaults."""
    table = document.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name} must be a table")
        return kind()
    defaults = kind()
    known = set(kind.__dataclass_fields__)
    _unknown_keys(table, known, f"{name}.", problems)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            continue
        default = getattr(defaults, key)
        expected = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            problems.append(f"{name}.{key} must be {type(default).__name__}, not {value!r}")
            continue
        values[key] = value
    return kind(**values)


def _check_receiver(receiver: ReceiverConfig, problems: list[str]) -> None:
    positive = (
        "max_body_bytes",
        "flush_interval_seconds",
        "retry_after_seconds",
        "read_timeout_seconds",
        "spool_max_bytes",
        "workers",
        "threads",
    )
    for key in positive:
        if getattr(receiver, key) <= 0:
            problems.append(f"receiver.{key} must be greater than zero")
    if receiver.trusted_proxy_hops < 0:
        problems.append("receiver.trusted_proxy_hops must be zero or more")
    storage = receiver.rate_limit_storage
    scheme = urllib.parse.urlsplit(storage).scheme
    if storage != "memory://" and scheme not in SHARED_RATE_LIMIT_SCHEMES:
        problems.append(
            f"receiver.rate_limit_storage: {redacted_url(storage)!r} is neither memory:// nor a "
            "Redis URL like redis://127.0.0.1:6379/0"
        )


_COMMON_SOURCE_KEYS = {
    "provider",
    "allow_ips",
    "rate_limit",
    "campaign",
    "max_body_bytes",
    "shadow",
}


def _parse_source(
    name: str,
    table: Any,
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: tuple[Path | None, list[Path]],
) -> SourceConfig | None:
    from ingest.providers import PROVIDERS  # the registry imports provider modules

    where = f"sources.{name}"
    if not _SOURCE_NAME.match(name):
        problems.append(f"{where}: a source name is 1-64 letters, digits, '-' or '_'")
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table")
        return None
    provider_name = table.get("provider")
    if provider_name not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        problems.append(f"{where}.provider: unknown provider {provider_name!r} (known: {known})")
        return None
    provider = PROVIDERS[provider_name]
    credential_names = {
        f"{key}{suffix}" for key in provider.credential_keys for suffix in ("", "_env", "_file")
    }
    allowed = _COMMON_SOURCE_KEYS | set(provider.option_keys) | credential_names
    _unknown_keys(table, allowed, f"{where}.", problems)

    credentials: dict[str, tuple[Secret, ...]] = {}
    before = len(problems)
    for key in sorted(provider.credential_keys):
        values = read_credential(key, table, base_dir, env, f"{where}.", problems, holders)
        if values:
            credentials[key] = values
    credentials_ok = len(problems) == before

    allow_ips: list[IPNetwork] = []
    for cidr in string_list(table.get("allow_ips", []), f"{where}.allow_ips", problems):
        try:
            allow_ips.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            problems.append(f"{where}.allow_ips: {cidr!r} is not an IPv4 or IPv6 CIDR")

    rate_limit = table.get("rate_limit")
    if rate_limit is not None and (
        not isinstance(rate_limit, str) or not _valid_rate_limit(rate_limit)
    ):
        problems.append(f'{where}.rate_limit: {rate_limit!r} is not a rate limit like "200/second"')
        rate_limit = None

    campaign = table.get("campaign")
    if campaign is not None and (not isinstance(campaign, str) or not campaign):
        problems.append(f"{where}.campaign must name a field")
        campaign = None
    max_body = table.get("max_body_bytes")
    if max_body is not None and (
        isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0
    ):
        problems.append(f"{where}.max_body_bytes must be a positive integer")
        max_body = None
    shadow = table.get("shadow", False)
    if not isinstance(shadow, bool):
        problems.append(f"{where}.shadow must be true or false")
        shadow = False

    source = SourceConfig(
        name=name,
        provider=provider_name,
        credentials=credentials,
        options={key: table[key] for key in provider.option_keys if key in table},
        allow_ips=tuple(allow_ips),
        rate_limit=rate_limit,
        campaign=campaign,
        max_body_bytes=max_body,
        shadow=shadow,
    )
    if credentials_ok:  # otherwise a credential mistake already said what is missing
        problems.extend(f"{where}: {problem}" for problem in provider.config_problems(source))
    return source


def _valid_rate_limit(text: str) -> bool:
    from limits import parse_many

    try:
        return bool(parse_many(text))
    except ValueError:
        return False


def _valid_http_url(text: str) -> bool:
    parts = urllib.parse.urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
