"""``mailpulse dashboard``: the Streamlit dashboard over this configuration's lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

import click

from mailpulse.cli import cli
from mailpulse.cli.common import config_option, load
from mailpulse.errors import MailpulseError

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--receiver-url",
    default=None,
    help="The receiver whose /metrics shows signature failures [http://127.0.0.1:8025].",
)
def dashboard(config_path: str | None, host: str, port: int, receiver_url: str | None) -> None:
    """Serve the dashboard (campaigns, deliverability, suppressions, ingestion health).

    \b
    Example:
        mailpulse dashboard --config /etc/mailpulse.toml --port 8501
    """
    config = load(config_path)  # fail here, in one line, rather than inside the app
    check_port(host, port)
    env = dict(os.environ)
    if config_path:
        env["MAILPULSE_CONFIG"] = str(Path(config_path).resolve())
    env["MAILPULSE_DATA_DIR"] = str(Path(config.data_dir).resolve())
    if receiver_url:
        env["MAILPULSE_RECEIVER_URL"] = receiver_url
    command = [
        sys.executable,
        "-m",
        "dashboards.serve",  # `streamlit run`, with the heavy imports done before serving
        str(APP),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--client.toolbarMode=viewer",  # no "Deploy" button for stakeholders
    ]
    click.echo(f"mailpulse: dashboard on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    sys.exit(run_until_stopped(command, env))


def check_port(host: str, port: int, option: str = "--port") -> None:
    """Refuse a port another process listens on, in one line, before Streamlit says more."""
    from mailpulse.demo import port_taken

    if port_taken(host, port):
        raise MailpulseError(
            f"port {port} on {host} is in use (another dashboard still running?); "
            f"stop it or choose another with {option}"
        )


def run_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` (Streamlit, or ``mailpulse dashboard`` for the demo) until it ends, or
    until Ctrl-C or SIGTERM ends it; 0 for a stop asked for.

    A SIGTERM sent to this process alone (systemd, a container runtime, ``kill``) is passed on,
    so the child never outlives the command.
    """
    started: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in started:
            child.send_signal(signum)

    # The handler comes first: a SIGTERM while the child starts must still reach it.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        process = subprocess.Popen(command, env=env)
        started.append(process)
        if stopping:
            process.terminate()
        while True:
            try:
                # Wake up now and then: a signal that another thread of this process takes
                # does not interrupt a blocking wait, and Ctrl-C must still be seen.
                returncode = process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:
                # A terminal's Ctrl-C reaches Streamlit too; a SIGINT sent to this process
                # alone does not: stop Streamlit either way.
                stopping = True
                process.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if stopping or returncode in (0, -signal.SIGTERM, -signal.SIGINT) else returncode
