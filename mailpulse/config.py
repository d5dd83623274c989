"""Configuration: ``mailpulse.toml`` plus the environment, validated once at start.

Where the file is found, in order: the ``--config PATH`` option, ``MAILPULSE_CONFIG``, then
``./mailpulse.toml``. With none, the demo setup applies (the data directory ``data``, and the
sources ``mailpulse demo`` generated credentials for) and :attr:`Config.is_demo` says so.
``MAILPULSE_DATA_DIR`` overrides ``data_dir``. A relative ``data_dir`` in a file is taken
relative to that file.

Loading reads files and never writes one. Sources and actions are read only when the provider
registry is passed in (``providers``, see :mod:`mailpulse.sources`): this module imports no
provider.

Any credential key may instead be given as ``<key>_env`` (the name of an environment
variable) or ``<key>_file`` (a path whose contents are the secret), and any may be a list:
every listed secret verifies, which is how secrets are rotated without downtime.

Every mistake is collected and reported together in one :class:`~mailpulse.errors.ConfigError`,
one sentence each, so a person fixes the file in one pass.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from mailpulse.actions_config import ActionConfig, parse_actions
from mailpulse.credentials import Secret as Secret
from mailpulse.credentials import read_credential
from mailpulse.credentials import redacted_url as redacted_url
from mailpulse.errors import ConfigError
from mailpulse.lake_config import LakeConfig as LakeConfig
from mailpulse.lake_config import check_lake, credential_names, finish_lake
from mailpulse.sources import ProviderRules, demo_source_tables, parse_sources, unknown_keys
from mailpulse.sources import SourceConfig as SourceConfig
from mailpulse.storage import LakeStore, open_store

DEFAULT_CONFIG_NAME = "mailpulse.toml"
#: The spool engines: embedded SQLite in the data directory, or PostgreSQL shared by several
#: receivers (``url``, ``url_env`` or ``url_file`` names the database).
SPOOL_ENGINES = ("local", "postgres")

#: Schemes of the stores ``receiver.rate_limit_storage`` may name besides ``memory://``.
SHARED_RATE_LIMIT_SCHEMES = ("redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix")


@dataclass(frozen=True)
class ReceiverConfig:
    """The ``[receiver]`` table."""

    max_body_bytes: int = 10_485_760
    flush_interval_seconds: float = 5.0
    trusted_proxy_hops: int = 0
    retry_after_seconds: int = 30
    # No longer used: stock gunicorn has no read deadline, and slow clients are bounded by the
    # nginx in front (deploy/nginx.conf). Still accepted so older files load; serve warns.
    read_timeout_seconds: float = 0.0
    spool_max_bytes: int = 4 * 1024**3  # answer 503 rather than fill the disk
    # memory:// (each worker enforces its share) or a store every worker shares (redis://...);
    # kept out of repr: the URL may hold a password.
    rate_limit_storage: str = field(default="memory://", repr=False)
    workers: int = 2
    threads: int = 8


@dataclass(frozen=True)
class SpoolConfig:
    """The ``[spool]`` table: where accepted requests wait for the flusher."""

    engine: str = "local"  # the embedded spool in the data directory
    # postgres: the database every receiver shares (a secret: it may hold a password)
    url: Secret | None = field(default=None, repr=False)


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
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    suppression: SuppressionConfig = field(default_factory=SuppressionConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    # Empty when loaded without the provider registry: readers of the lake need no source.
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    # Read with the sources, and only then: what to do with events as they arrive.
    actions: Mapping[str, ActionConfig] = field(default_factory=dict)
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
        """The local directory of a lake kept on this machine (see :attr:`lake_store`)."""
        if self.lake.is_remote:
            raise ConfigError([f"the lake is on object storage ({self.lake.url}), not a directory"])
        return Path(self.lake.url) if self.lake.url else self.data_dir / "lake"

    @cached_property
    def lake_store(self) -> LakeStore:
        """The Parquet lake (``events``, ``raw``, ``quarantine``, ``messages``), local or on
        object storage."""
        return open_store(self.lake, self.data_dir / "lake")

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
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    providers: Mapping[str, ProviderRules] | None = None,
) -> Config:
    """Find, read and validate the configuration; ``providers`` to read its sources too.

    Raises:
        ConfigError: with every mistake found, one sentence each.
    """
    env = os.environ if env is None else env
    found = find_config_path(path, env)
    if found is None:
        return _demo_config(env, providers)
    origin = str(found)
    try:
        document = tomllib.loads(found.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(["file not found"], origin) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot be read ({exc.__class__.__name__})"], origin) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"is not valid TOML: {exc}"], origin) from None
    base_dir = found.resolve().parent
    return parse_config(document, origin=origin, base_dir=base_dir, env=env, providers=providers)


def parse_config(
    document: Mapping[str, Any],
    *,
    origin: str = "configuration",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    providers: Mapping[str, ProviderRules] | None = None,
) -> Config:
    """Validate a parsed TOML document (tests call this directly).

    The steps: no unknown top-level key, the data directory, each flat table with its own
    checks, then the sources (read only with ``providers``). Every mistake of every step is
    collected before one :class:`ConfigError` reports them.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    unknown_keys(document, {"data_dir", "sources", "actions", "spool", *_TABLES}, "", problems)
    data_dir = _data_dir(document, base_dir, env, problems)
    tables = {name: _table(document, name, problems) for name in _TABLES}
    # Secrets written in the file itself make the file a secret (a parsed document has none).
    config_file = Path(origin) if base_dir is not None else None
    secret_files: list[Path] = []
    storage = tables["receiver"].rate_limit_storage
    if config_file is not None and urllib.parse.urlsplit(storage).password:
        secret_files.append(config_file)
    holders = (config_file, secret_files)
    spool = _spool_table(document, base_dir, env, problems, holders)
    lake_table = document.get("lake", {})
    if isinstance(lake_table, dict):
        tables["lake"] = finish_lake(tables["lake"], lake_table, base_dir, env, problems, holders)
    raw_sources = document.get("sources", {})
    sources = parse_sources(raw_sources, providers, base_dir, env, problems, holders)
    actions: dict[str, ActionConfig] = {}
    raw_actions = document.get("actions", {})
    if providers is not None:
        actions = parse_actions(raw_actions, base_dir, env, problems, holders)
    elif not isinstance(raw_actions, dict):
        problems.append("actions must be a table of [actions.<name>] tables")
    if problems:
        raise ConfigError(problems, origin)
    return Config(
        data_dir=data_dir,
        **tables,
        spool=spool,
        sources=sources,
        actions=actions,
        origin=origin,
        secret_files=tuple(dict.fromkeys(path.resolve() for path in secret_files)),
    )


def _demo_config(env: Mapping[str, str], providers: Mapping[str, ProviderRules] | None) -> Config:
    """The built-in demo setup: ``data`` (or ``MAILPULSE_DATA_DIR``) and its demo sources.

    The sources are those ``mailpulse demo`` generated credentials for into
    ``<data_dir>/demo_credentials.json`` (none before it ran), validated like a file's; they
    are read only with ``providers``. Nothing is written.
    """
    data_dir = Path(env.get("MAILPULSE_DATA_DIR") or "data")
    sources = demo_source_tables(data_dir) if providers is not None else {}
    document = {"data_dir": str(data_dir), "sources": sources}
    origin = str(data_dir / "demo_credentials.json")
    config = parse_config(document, origin=origin, env=env, providers=providers)
    return replace(config, origin="built-in demo defaults", is_demo=True)


def _data_dir(
    document: Mapping[str, Any], base_dir: Path | None, env: Mapping[str, str], problems: list[str]
) -> Path:
    """``MAILPULSE_DATA_DIR``, else ``data_dir`` (relative to the file), else ``data``."""
    value = env.get("MAILPULSE_DATA_DIR") or document.get("data_dir", "data")
    if not isinstance(value, str) or not value:
        problems.append("data_dir must be a path string")
        value = "data"
    data_dir = Path(value).expanduser()
    if not data_dir.is_absolute() and base_dir is not None and not env.get("MAILPULSE_DATA_DIR"):
        data_dir = base_dir / data_dir
    return data_dir


def _table(document: Mapping[str, Any], name: str, problems: list[str]) -> Any:
    """A flat table read into its dataclass, names and types checked against the defaults,
    then the table's own checks."""
    kind, check = _TABLES[name]
    table = document.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name} must be a table")
        return kind()
    defaults = kind()
    secrets = credential_names() if name == "lake" else set()  # read by finish_lake
    known = {key for key in kind.__dataclass_fields__ if getattr(defaults, key) is not None}
    unknown_keys(table, known | secrets, f"{name}.", problems)
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
    parsed = kind(**values)
    check(parsed, problems)
    return parsed


def _check_receiver(receiver: ReceiverConfig, problems: list[str]) -> None:
    positive = (
        "max_body_bytes",
        "flush_interval_seconds",
        "retry_after_seconds",
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


def _spool_table(
    document: Mapping[str, Any],
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: tuple[Path | None, list[Path]],
) -> SpoolConfig:
    """The ``[spool]`` table: the engine, and for postgres the database URL (a credential)."""
    table = document.get("spool", {})
    if not isinstance(table, dict):
        problems.append("spool must be a table")
        return SpoolConfig()
    unknown_keys(table, {"engine", "url", "url_env", "url_file"}, "spool.", problems)
    engine = table.get("engine", "local")
    if engine not in SPOOL_ENGINES:
        problems.append(
            f'spool.engine must be "local" (the embedded spool) or "postgres" (shared by '
            f"several receivers), not {engine!r}"
        )
        return SpoolConfig()
    found = read_credential("url", table, base_dir, env, "spool.", problems, holders)
    url = found[0] if found else None
    if engine == "postgres":
        scheme = urllib.parse.urlsplit(url.reveal()).scheme if url else ""
        if url is None:
            problems.append('spool.url: engine "postgres" needs url, url_env or url_file')
        elif scheme not in ("postgresql", "postgres"):
            problems.append("spool.url must be a postgresql://user:password@host/database URL")
    elif url is not None:
        problems.append('spool.url is only for engine = "postgres"')
    return SpoolConfig(engine=engine, url=url)


def _check_dashboard(dashboard: DashboardConfig, problems: list[str]) -> None:
    parts = urllib.parse.urlsplit(dashboard.receiver_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("dashboard.receiver_url must be an http:// or https:// URL with a host")


def _no_checks(_table: object, _problems: list[str]) -> None:
    """Every value of the right type is valid."""


#: The flat tables: their dataclass and the checks beyond each key's type.
_TABLES: dict[str, tuple[type[Any], Callable[[Any, list[str]], None]]] = {
    "receiver": (ReceiverConfig, _check_receiver),
    "lake": (LakeConfig, check_lake),
    "suppression": (SuppressionConfig, _no_checks),
    "dashboard": (DashboardConfig, _check_dashboard),
}
