"""The ``mailpulse`` command line: thin Click commands over the ingest and analytics packages.

Errors become one line on stderr and a non-zero exit (see :func:`main`); machine output
(``--format csv|json``) goes to stdout and nothing else does.
"""

from __future__ import annotations

import os
import sys

import click

from mailpulse import __version__
from mailpulse.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE
from mailpulse.errors import ConfigError, MailpulseError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mailpulse")
def cli() -> None:
    """mailpulse: email-provider webhooks in, trusted delivery and engagement rates out.

    \b
    Example:
        mailpulse serve --port 8025
        mailpulse report --by campaign
    """


def main() -> None:
    """Console-script entry point: run the CLI and turn errors into one clear line."""
    from mailpulse.cli import actions, commands, dashboard, sql, traffic  # noqa: F401  (registers them)

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mailpulse: aborted", err=True)
        sys.exit(EXIT_FAILURE)
    except click.UsageError as error:
        click.echo(f"mailpulse: {error.format_message()}", err=True)
        hint = f"Try '{error.ctx.command_path} --help'." if error.ctx else ""
        if hint:
            click.echo(hint, err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as error:
        click.echo(f"mailpulse: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except ConfigError as error:
        for line in error.lines():
            click.echo(f"mailpulse: config error: {line}", err=True)
        sys.exit(EXIT_CONFIG)
    except MailpulseError as error:
        click.echo(f"mailpulse: {error}", err=True)
        sys.exit(EXIT_FAILURE)
    except BrokenPipeError:
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # a bug: still one line, the traceback only on request
        if os.environ.get("MAILPULSE_DEBUG"):
            raise
        click.echo(
            f"mailpulse: unexpected error ({type(error).__name__}: {error}); "
            "set MAILPULSE_DEBUG=1 for the traceback",
            err=True,
        )
        sys.exit(EXIT_FAILURE)
