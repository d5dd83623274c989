"""The commands. Each parses options, calls one library function and prints the result."""

from __future__ import annotations

import functools
import sys
from datetime import datetime
from pathlib import Path

import click

from analytics.queries import DIMENSIONS, PERIODS
from mailpulse.cli import cli
from mailpulse.cli.common import EXIT_BUSY, EXIT_NOT_SUPPRESSED, config_option, load
from mailpulse.cli.output import print_frame
from mailpulse.config import Config, redacted_url


@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes [receiver.workers].")
@click.option(
    "--threads", type=click.IntRange(1, 256), help="Threads per worker [receiver.threads]."
)
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key.")
# `mailpulse demo` has said which setup applies already; its server need not say it again.
@click.option("--demo-notice/--no-demo-notice", default=True, hidden=True)
def serve(
    config_path: str | None,
    host: str,
    port: int,
    workers: int | None,
    threads: int | None,
    certfile: str | None,
    keyfile: str | None,
    demo_notice: bool,
) -> None:
    """Run the webhook receiver (gunicorn) and the background flusher.

    SIGTERM drains in-flight requests, flushes the spool into the lake, then exits.

    \b
    Example:
        mailpulse serve --host 0.0.0.0 --port 8025 --workers 4
    """
    from ingest.intake.notices import start_notices
    from ingest.intake.server import check_can_serve
    from ingest.intake.server import serve as run
    from ingest.logs import configure

    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    if certfile and keyfile:
        _check_tls(certfile, keyfile)
    config = load(config_path, announce=demo_notice, need_sources=True)
    if not config.sources:
        click.echo(
            f"mailpulse: warning: {config_path or 'the configuration'} has no [sources.<name>] "
            "table, so every webhook will be refused (404 unknown_source); add one per ESP",
            err=True,
        )
    check_can_serve(config, host, port)  # one line and exit 1, before claiming to receive
    configure()  # the flusher thread logs as JSON lines, like the workers
    click.echo(
        f"mailpulse: receiving on {'https' if certfile else 'http'}://{host}:{port}/webhooks/"
        f"<source> for {', '.join(sorted(config.sources)) or 'no sources'}",
        err=True,
    )
    click.echo(f"mailpulse: {_spool_line(config)}", err=True)
    for line in start_notices(config, workers or config.receiver.workers):
        click.echo(f"mailpulse: {line}", err=True)
    sys.exit(
        run(
            config,
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            certfile=certfile,
            keyfile=keyfile,
        )
    )


def _spool_line(config: Config) -> str:
    """Which spool engine takes the requests, said once at start (no password)."""
    if config.spool.engine == "postgres" and config.spool.url is not None:
        where = redacted_url(config.spool.url.reveal())
        return f"spool: PostgreSQL {where}, shared by every receiver that names it"
    return f"spool: embedded SQLite in {config.spool_dir}"


def _check_tls(certfile: str, keyfile: str) -> None:
    """Load the certificate and key once now: gunicorn would start with broken ones and fail
    every handshake, which nothing but its log would tell."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc.__class__.__name__
        raise click.UsageError(
            f"--certfile/--keyfile: cannot load the certificate and key ({reason})"
        ) from None


@cli.command()
@config_option
@click.option(
    "--wait",
    default=60.0,
    show_default=True,
    help="Seconds to wait for a running flusher to finish its pass.",
)
def flush(config_path: str | None, wait: float) -> None:
    """Drain the spool into the lake now; exit 0 when done.

    \b
    Example:
        mailpulse flush --config /etc/mailpulse.toml
    """
    from ingest.errors import FlusherBusy
    from ingest.flush.flusher import Flusher

    config = load(config_path)
    try:
        result = Flusher(config).flush(wait_seconds=wait)
    except FlusherBusy as error:
        click.echo(f"mailpulse: {error}", err=True)
        sys.exit(EXIT_BUSY)
    click.echo(
        f"flushed {result.requests} requests: {result.events} new events, "
        f"{result.duplicates} duplicates dropped, {result.quarantined} quarantined",
        err=True,
    )


@cli.command()
@config_option
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Only this UTC date.")
def compact(config_path: str | None, day: datetime | None) -> None:
    """Merge each partition's small files into one, one row per event_id.

    \b
    Example:
        mailpulse compact --date 2026-11-27
    """
    from analytics.rollup import build
    from ingest.flush.flusher import Flusher
    from ingest.flush.maintenance import compact as run

    config = load(config_path)
    date = day.strftime("%Y-%m-%d") if day else None
    rebuild = functools.partial(build, rules=config.suppression)  # it covered old files
    result = run(Flusher(config), date, after_rewrite=rebuild)
    click.echo(
        f"compacted {result.partitions} partitions: {result.files_before} files into "
        f"{result.files_after}, {result.rows_removed} duplicate rows removed",
        err=True,
    )


@cli.command()
@config_option
@click.option(
    "--by",
    type=click.Choice(list(DIMENSIONS)),
    default="campaign",
    show_default=True,
    help="Dimension to group by.",
)
@click.option(
    "--period",
    type=click.Choice(list(PERIODS)),
    help="Bucket size with --by date [day].",
)
@click.option(
    "--metrics",
    "metric_list",
    help="Comma-separated metric names "
    "(default: all for csv/json, the headline ones for the table).",
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First UTC date, inclusive.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC date, exclusive.")
@click.option("--campaign", help="Only this campaign.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def report(
    config_path: str | None,
    by: str,
    period: str | None,
    metric_list: str | None,
    since: datetime | None,
    until: datetime | None,
    campaign: str | None,
    fmt: str,
) -> None:
    """Print the registry's metrics per campaign, date, domain, mailbox provider, ESP or source.

    Messages count on the UTC date they were first seen; --since is inclusive, --until
    exclusive. Every metric is defined in docs/metrics.md.

    \b
    Example:
        mailpulse report --by campaign --since 2026-11-01 --format csv > rates.csv
        mailpulse report --by date --period week --metrics delivered,bounce_rate
    """
    from analytics import HEADLINE, open_lake

    if period is not None and by != "date":
        raise click.UsageError(f"--period applies to --by date only, not --by {by}")
    config = load(config_path, announce=fmt == "table")
    if metric_list:
        names: list[str] | None = [n.strip() for n in metric_list.split(",") if n.strip()]
    else:
        names = list(HEADLINE) if fmt == "table" else None
    with open_lake(config) as lake:
        frame = lake.metrics(
            by, metrics=names, period=period or "day", since=since, until=until, campaign=campaign
        )
    print_frame(frame, fmt, title=f"mailpulse report by {by}")


@cli.group()
def quarantine() -> None:
    """See and re-process payloads that were authentic but could not be mapped."""


@quarantine.command("list")
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def quarantine_list(config_path: str | None, fmt: str) -> None:
    """List quarantined payloads, newest first, with the stage and reason.

    \b
    Example:
        mailpulse quarantine list --format json
    """
    from ingest.flush.flusher import Flusher
    from ingest.flush.maintenance import quarantine_frame

    config = load(config_path, announce=fmt == "table")
    frame = quarantine_frame(Flusher(config))
    print_frame(
        frame.select(
            "received_at", "source", "provider", "stage", "reason", "request_id", "quarantine_id"
        ),
        fmt,
        title="quarantine",
        whole=("request_id", "quarantine_id"),
    )


@quarantine.command("replay")
@config_option
def quarantine_replay(config_path: str | None) -> None:
    """Normalize every quarantined payload again, after a parser fix or a config change.

    \b
    Example:
        mailpulse quarantine replay
    """
    from ingest.flush.flusher import Flusher
    from ingest.flush.maintenance import replay_quarantine

    config = load(config_path)
    result, remaining = replay_quarantine(Flusher(config))
    click.echo(
        f"replayed: {result.events} new events, {result.duplicates} duplicates, "
        f"{remaining} still quarantined",
        err=True,
    )


@cli.group()
def suppressions() -> None:
    """Addresses that must not be mailed again: export them for an ESP, or explain one."""


@suppressions.command("export")
@config_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="File to write, atomically (default, or '-': standard output).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "sendgrid", "mailgun", "ses"]),
    default="csv",
    show_default=True,
)
@click.option(
    "--changes-since-last",
    is_flag=True,
    help="Write only additions and removals since the previous export to this file.",
)
def suppressions_export(
    config_path: str | None, out: str | None, fmt: str, changes_since_last: bool
) -> None:
    """Write the suppression list in a format the ESP imports: to standard output, or with
    --out to a file that appears whole or not at all.

    Exit status 0 when it is written (even with no rows), 1 when it cannot be.

    \b
    Example (crontab, every night at 02:15):
        15 2 * * * mailpulse suppressions export --format sendgrid --out /srv/supp.json
        mailpulse suppressions export --format csv | gzip > suppressions.csv.gz
    """
    # The table is one DuckDB query (from the rollup's kept table when there is one), held row
    # for row to the event-by-event walk of analytics.suppression by its tests.
    from analytics import open_lake
    from analytics.exports import export, render
    from analytics.suppression_table import suppression_table as compute

    to_stdout = out in (None, "-")
    if to_stdout and changes_since_last:
        raise click.UsageError(
            "--changes-since-last needs --out: it compares with the last export to that file"
        )
    config = load(config_path, announce=False)
    with open_lake(config) as lake:
        frame = compute(lake, config.suppression)
    if to_stdout:
        sys.stdout.buffer.write(render(frame.to_dicts(), fmt))
        sys.stdout.flush()
        return
    target = Path(str(out))
    result = export(frame, target, fmt, config.state_dir, changes_since_last=changes_since_last)
    click.echo(
        f"mailpulse: wrote {result.rows} rows to {result.path} ({result.total} suppressed; "
        f"{result.added} added, {result.removed} removed since the last export)",
        err=True,
    )


@suppressions.command("why")
@config_option
@click.argument("address")
def suppressions_why(config_path: str | None, address: str) -> None:
    """Explain whether ADDRESS is suppressed, by which rule, and on what evidence.

    Exit status 0 when it is suppressed, 5 when it is not.

    \b
    Example:
        mailpulse suppressions why ann@example.com
    """
    from analytics import open_lake
    from analytics.suppression import explain

    config = load(config_path, announce=False)
    with open_lake(config) as lake:
        explanation = explain(lake, config.suppression, address)
    for line in explanation.lines():
        click.echo(line)
    if not explanation.suppressed:
        sys.exit(EXIT_NOT_SUPPRESSED)


@cli.command()
@config_option
def reclassify(config_path: str | None) -> None:
    """Re-run the open and click agent rules over the whole lake (after the rules change).

    Agents the ESP flagged are kept; rule decisions are recomputed partition by partition.

    \b
    Example:
        mailpulse reclassify --config /etc/mailpulse.toml
    """
    from analytics.rollup import build
    from ingest.flush.flusher import Flusher
    from ingest.flush.maintenance import reclassify as run

    config = load(config_path)
    rebuild = functools.partial(build, rules=config.suppression)  # it covered old files
    result = run(Flusher(config), after_rewrite=rebuild)
    click.echo(
        f"reclassified {result.rows_changed} opens and clicks in {result.partitions} partitions",
        err=True,
    )
