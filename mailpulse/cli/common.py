"""Options and helpers every command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from mailpulse.config import Config, load_config
from mailpulse.errors import MailpulseError

#: Exit statuses, documented in the README for cron.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_BUSY = 4
EXIT_NOT_SUPPRESSED = 5

F = TypeVar("F", bound=Callable[..., Any])


def config_option(function: F) -> F:
    """``--config PATH``, accepted by every command."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="mailpulse.toml to use (default: $MAILPULSE_CONFIG, then ./mailpulse.toml).",
    )(function)


def load(
    config_path: str | None,
    *,
    announce: bool = True,
    need_sources: bool = False,
    generate_demo_credentials: bool = False,
) -> Config:
    """Load the configuration and its sources; say so on stderr when the demo setup applies.

    With ``need_sources`` (commands that receive or send webhooks), the demo setup before
    ``mailpulse demo`` generated its credentials stops with one line saying what to do.
    ``generate_demo_credentials`` is for ``mailpulse demo``, the one command that does.
    """
    from ingest.providers import PROVIDERS

    config = load_config(config_path, providers=PROVIDERS)
    if config.is_demo and generate_demo_credentials:
        from mailpulse.simulate.credentials import ensure_demo_credentials

        ensure_demo_credentials(config.data_dir)
        config = load_config(config_path, providers=PROVIDERS)
    if config.is_demo and need_sources and not config.sources:
        raise MailpulseError(
            f"no mailpulse.toml and no demo credentials in {config.data_dir}/: "
            "run `mailpulse demo` first, or write a mailpulse.toml"
        )
    if config.is_demo and announce:
        click.echo(
            f"mailpulse: no mailpulse.toml found; using the demo setup in {config.data_dir}/",
            err=True,
        )
    return config
