"""Options and helpers every command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from mailpulse.config import Config, load_config

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


def load(config_path: str | None, *, announce: bool = True) -> Config:
    """Load the configuration; say so on stderr when the demo defaults apply."""
    config = load_config(config_path)
    if config.is_demo and announce:
        click.echo(
            f"mailpulse: no mailpulse.toml found; using the demo setup in {config.data_dir}/",
            err=True,
        )
    return config
