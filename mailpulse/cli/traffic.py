"""``mailpulse simulate`` and ``mailpulse demo``: signed ESP traffic, and the whole job at once."""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from mailpulse.cli import cli
from mailpulse.cli.common import config_option, load
from mailpulse.cli.dashboard import check_port, run_until_stopped
from mailpulse.cli.output import print_frame
from mailpulse.errors import MailpulseError

if TYPE_CHECKING:
    from mailpulse.config import Config
    from mailpulse.simulate.run import Result as SimulationResult


def _source_list(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, ...]:
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    if value is not None and not names:
        raise click.BadParameter("name at least one source")
    return names


@cli.command()
@config_option
@click.option(
    "--url",
    default="http://127.0.0.1:8025",
    show_default=True,
    help="Base URL of the receiver; source S gets <url>/webhooks/S.",
)
@click.option(
    "--sources",
    callback=_source_list,
    help="Comma-separated source names (default: every configured source).",
)
@click.option("--seed", default=7, show_default=True, type=click.IntRange(0, 999_999))
@click.option(
    "--messages",
    default=200,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Messages per source (each yields several events).",
)
@click.option(
    "--duplicates",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests the ESP sends again, later.",
)
@click.option("--out-of-order", is_flag=True, help="Let requests overtake each other.")
@click.option(
    "--rate",
    default=0.0,
    type=click.FloatRange(0, min_open=False),
    help="At most this many requests per second (default: no limit).",
)
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ground-truth JSONL to write (default: <data_dir>/simulate/truth-<seed>.jsonl).",
)
@click.option(
    "--sender-keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON {"<source>": {"<key>": "<value>"}}: keys a source cannot share, e.g. a '
    "private key (<data_dir>/demo_credentials.json is read too when present).",
)
@click.option(
    "--end",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The simulated days end at 00:00 UTC of this date (default: today).",
)
def simulate(
    config_path: str | None,
    url: str,
    sources: tuple[str, ...],
    seed: int,
    messages: int,
    duplicates: float,
    out_of_order: bool,
    rate: float,
    concurrency: int,
    truth: Path | None,
    sender_keys: Path | None,
    end: datetime | None,
) -> None:
    """Send realistic traffic in every source's ESP format, signed as the ESP signs it.

    Campaigns over several days to gmail, outlook, yahoo, icloud and corporate recipients:
    deliveries, hard and soft bounces, deferrals, drops, Apple and Gmail proxy opens, human
    opens and clicks, security-scanner clicks, complaints, unsubscribes; batched as each ESP
    batches, with repeats, retries on 429/503 and (optionally) out-of-order arrival. The
    same seed sends the same events. Every unique event accepted is written to the truth
    file; the exit status is 1 when a source's requests were refused.

    \b
    Example:
        mailpulse simulate --url http://127.0.0.1:8025 --messages 500 --duplicates 0.2 \\
            --out-of-order --rate 200
    """
    from mailpulse.simulate import Options
    from mailpulse.simulate import simulate as run

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must start with http:// or https://", param_hint="--url")
    config = load(config_path, need_sources=True)
    options = Options(
        url=url,
        sources=sources,
        seed=seed,
        messages=messages,
        duplicates=duplicates,
        out_of_order=out_of_order,
        rate=rate,
        concurrency=concurrency,
        truth=truth,
        sender_keys=sender_keys,
        end=end.date() if end else None,
    )
    result = run(config, options)
    for report in result.reports:
        click.echo(f"mailpulse: {report.line()}", err=True)
    click.echo(
        f"mailpulse: {result.unique_events} unique events accepted; truth in {result.truth_path}",
        err=True,
    )
    if result.failed:
        names = ", ".join(report.source for report in result.failed)
        raise MailpulseError(f"requests to {names} were not accepted (see above)")


@cli.command()
@config_option
@click.option(
    "--messages",
    default=150,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Messages per source (each yields several events).",
)
@click.option(
    "--duplicate-rate",
    default=0.15,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests sent again, as ESP retries do.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port for the receiver (default: free)."
)
@click.option("--seed", default=7, show_default=True, type=click.IntRange(0, 999_999))
@click.option(
    "--dashboard-port",
    default=8501,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port for the dashboard at the end.",
)
@click.option("--no-dashboard", is_flag=True, help="Stop after the report.")
def demo(
    config_path: str | None,
    messages: int,
    duplicate_rate: float,
    port: int | None,
    seed: int,
    dashboard_port: int,
    no_dashboard: bool,
) -> None:
    """Start a receiver, send every source's traffic, flush, report, open the dashboard.

    With no mailpulse.toml this uses the demo setup in ./data: one source per provider,
    named after it, with credentials generated once into data/demo_credentials.json.

    \b
    Ctrl-C or SIGTERM stops everything it started (receiver, dashboard).

    \b
    Example:
        mailpulse demo --messages 500 --no-dashboard
        mailpulse demo --dashboard-port 8502
    """
    from mailpulse import demo as runner
    from mailpulse.simulate import Options
    from mailpulse.simulate import simulate as run

    config = load(config_path, generate_demo_credentials=True)
    if not no_dashboard:
        # Refused before minutes of work, not after them.
        check_port("127.0.0.1", dashboard_port, "--dashboard-port")
    port = port or runner.free_port()
    base = f"http://127.0.0.1:{port}"
    config_args = ["--config", config_path] if config_path else ["--no-demo-notice"]
    env = dict(os.environ)
    if config.is_demo:
        env["MAILPULSE_DATA_DIR"] = str(config.data_dir.resolve())
    server = runner.start_server(config_args, port, env)
    signal.signal(signal.SIGTERM, _interrupt)  # so the `finally` below stops the server
    try:
        runner.wait_ready(base, server)
        click.echo(
            f"mailpulse: simulating {messages} messages for each of "
            f"{', '.join(sorted(config.sources))} at {base}/webhooks/<source>",
            err=True,
        )
        options = Options(url=base, seed=seed, messages=messages, duplicates=duplicate_rate)
        result = run(config, options)
    finally:
        status = runner.stop_server(server)
    for report in result.reports:
        click.echo(f"mailpulse: {report.line()}", err=True)
    click.echo(f"mailpulse: server stopped with status {status}", err=True)
    _report(config, result)
    if result.failed:
        names = ", ".join(report.source for report in result.failed)
        raise MailpulseError(f"requests to {names} were not accepted (see above)")
    if not no_dashboard:
        _dashboard(config_path, env, dashboard_port)


def _report(config: Config, result: SimulationResult) -> None:
    """Flush what the receiver left, then print the lake's count and the campaign table."""
    from analytics import HEADLINE, open_lake
    from ingest.flush.flusher import Flusher

    flushed = Flusher(config).flush()
    with open_lake(config) as lake:
        total = lake.sql("SELECT count(*) AS n FROM events")["n"][0]
        table = lake.metrics("campaign", metrics=list(HEADLINE))
    click.echo(
        f"mailpulse: the lake holds {total} unique events; the simulator's truth "
        f"({result.truth_path}) has {result.unique_events} "
        f"({flushed.requests} requests left to flush at exit)",
        err=True,
    )
    print_frame(table, "table", title="campaign performance")


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM, handled as Ctrl-C is, once: the receiver is stopped on the way out."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise KeyboardInterrupt


def _dashboard(config_path: str | None, env: dict[str, str], port: int) -> None:
    """Run ``mailpulse dashboard`` when it exists; otherwise say how to look at the data."""
    if "dashboard" not in cli.commands:
        click.echo(
            "mailpulse: no dashboard in this installation; explore the data with "
            "`mailpulse report --by domain` or the notebooks in notebooks/",
            err=True,
        )
        return
    command = [sys.executable, "-m", "mailpulse", "dashboard", "--port", str(port)]
    command += ["--config", config_path] if config_path else []
    # Ctrl-C or a SIGTERM ends the dashboard and Streamlit with it; that is how the demo ends.
    status = run_until_stopped(command, env)
    if status:
        sys.exit(status)
